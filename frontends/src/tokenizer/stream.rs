//! Streaming detokenization: text as ids arrive, one id at a time.
//!
//! A token is not always text on its own: byte-level BPE pieces and byte-fallback
//! tokens (`<0xE2>`) may hold part of a character, and SentencePiece decoders
//! turn `▁` into a space only where a word follows. The `tokenizers` library's
//! `DecodeStream` handles this the usual way: it decodes the ids since a prefix
//! offset and returns what the decoding adds beyond the previous text, once it
//! does not end in U+FFFD (an incomplete character). kiln does the same with
//! its own two offsets, and goes on where the library gives up: when the
//! window's first ids decode differently once later ids follow (seen with
//! byte-fallback tokens that random or unusual models emit in odd orders), the
//! text already returned stands and the stream returns what lies beyond it.

use super::error::TokenizerError;

/// Incremental decoder of one sequence of ids (see
/// [`TextTokenizer::stream`](super::TextTokenizer::stream)).
///
/// The pieces [`push`](Self::push) returns, followed by what
/// [`finish`](Self::finish) returns, concatenate to the decoding of all the ids
/// pushed (unless a window decoded differently after the fact: see the module
/// docs).
pub struct DecodeStream<'a> {
    tokenizer: &'a tokenizers::Tokenizer,
    skip_special_tokens: bool,
    /// Every id pushed.
    ids: Vec<u32>,
    /// `ids[prefix..read]` decode to the text the window starts with.
    prefix: usize,
    /// Ids before this one have been turned into text.
    read: usize,
}

impl<'a> DecodeStream<'a> {
    pub(crate) fn new(tokenizer: &'a tokenizers::Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.tokenizer
            .decode(ids, self.skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                message: format!("ids {ids:?}: {e}"),
            })
    }

    /// Adds the next id; returns the text it completes, or `None` when it
    /// completes none yet (part of a character, or a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let before = self.decode(&self.ids[self.prefix..self.read])?;
        let now = self.decode(&self.ids[self.prefix..])?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let mut cut = before.len();
        while !now.is_char_boundary(cut) {
            cut += 1;
        }
        let piece = now[cut..].to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok((!piece.is_empty()).then_some(piece))
    }

    /// Ends the sequence: returns the text not yet returned (an incomplete
    /// character at the end, decoded as U+FFFD), or `None` when there is none.
    pub fn finish(self) -> Result<Option<String>, TokenizerError> {
        let before = self.decode(&self.ids[self.prefix..self.read])?;
        let now = self.decode(&self.ids[self.prefix..])?;
        if now.len() <= before.len() {
            return Ok(None);
        }
        let mut cut = before.len();
        while !now.is_char_boundary(cut) {
            cut += 1;
        }
        Ok(Some(now[cut..].to_string()).filter(|rest| !rest.is_empty()))
    }

    /// The ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
