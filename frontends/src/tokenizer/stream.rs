//! Streaming detokenization: text as ids arrive, one id at a time.
//!
//! A token is not always text on its own: byte-level BPE pieces and byte-fallback
//! tokens (`<0xE2>`) may hold part of a character, and SentencePiece decoders
//! turn `▁` into a space only where a word follows. The `tokenizers` library's
//! `DecodeStream` handles this the usual way: it decodes the ids since a prefix
//! offset and returns what the decoding adds beyond the previous text, once it
//! does not end in U+FFFD (an incomplete character).

use tokenizers::{
    DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
};

use super::error::TokenizerError;

/// The `tokenizers` library's stream over a [`tokenizers::Tokenizer`].
type LibraryStream<'a> = tokenizers::DecodeStream<
    'a,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Incremental decoder of one sequence of ids (see
/// [`TextTokenizer::stream`](super::TextTokenizer::stream)).
///
/// The pieces [`push`](Self::push) returns, followed by what
/// [`finish`](Self::finish) returns, concatenate to the decoding of all the ids
/// pushed.
pub struct DecodeStream<'a> {
    tokenizer: &'a tokenizers::Tokenizer,
    inner: LibraryStream<'a>,
    skip_special_tokens: bool,
    /// Every id pushed, for [`finish`](Self::finish).
    ids: Vec<u32>,
    /// Bytes of text returned so far.
    emitted: usize,
}

impl<'a> DecodeStream<'a> {
    pub(crate) fn new(tokenizer: &'a tokenizers::Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            inner: tokenizer.decode_stream(skip_special_tokens),
            skip_special_tokens,
            ids: Vec::new(),
            emitted: 0,
        }
    }

    /// Adds the next id; returns the text it completes, or `None` when it
    /// completes none yet (part of a character, or a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let piece = self.inner.step(id).map_err(|e| TokenizerError::Decode {
            message: format!("id {id}: {e}"),
        })?;
        if let Some(piece) = &piece {
            self.emitted += piece.len();
        }
        Ok(piece)
    }

    /// Ends the sequence: returns the text not yet returned (an incomplete
    /// character at the end, decoded as U+FFFD), or `None` when there is none.
    pub fn finish(self) -> Result<Option<String>, TokenizerError> {
        let text = self
            .tokenizer
            .decode(&self.ids, self.skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                message: e.to_string(),
            })?;
        Ok(text
            .get(self.emitted..)
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned))
    }

    /// The ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
