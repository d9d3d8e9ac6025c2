//! Native rules that work one e-class at a time.
//!
//! Most native rules do not match a pattern with variables: they look at one
//! e-class and its neighbourhood (a region's producers, a constant's operands, a
//! decomposition's sub-terms) and add equivalent e-nodes to it. [`ClassRule`] is
//! that shape; [`class_rewrite`] turns one into an `egg` rewrite whose searcher
//! asks [`ClassRule::matches`] of every e-class and whose applier runs
//! [`ClassRule::apply`] on the matches.

use std::sync::Arc;

use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};

use crate::{KilnAnalysis, KilnEGraph, KilnLang};

/// A rule matched and applied per e-class.
pub(crate) trait ClassRule: Send + Sync + 'static {
    /// Whether e-class `class` has work for the rule. Asked of every e-class in
    /// every iteration: keep it cheap (or cached in the analysis).
    fn matches(&self, egraph: &KilnEGraph, class: Id) -> bool;

    /// Does the rule's work at `class`: adds e-nodes and unions; returns the
    /// e-classes that changed.
    fn apply(&self, egraph: &mut KilnEGraph, class: Id) -> Vec<Id>;
}

/// The `egg` rewrite named `name` running `rule`.
pub(crate) fn class_rewrite<R: ClassRule>(name: &str, rule: R) -> Rewrite<KilnLang, KilnAnalysis> {
    let rule = Arc::new(rule);
    Rewrite::new(name, ByClass(rule.clone()), ByClass(rule)).expect("no variables to bind")
}

/// A [`ClassRule`] as egg's searcher and applier.
struct ByClass<R>(Arc<R>);

impl<R: ClassRule> Searcher<KilnLang, KilnAnalysis> for ByClass<R> {
    fn search_eclass_with_limit(
        &self,
        egraph: &KilnEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, KilnLang>> {
        (limit > 0 && self.0.matches(egraph, eclass)).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl<R: ClassRule> Applier<KilnLang, KilnAnalysis> for ByClass<R> {
    fn apply_one(
        &self,
        egraph: &mut KilnEGraph,
        eclass: Id,
        _subst: &Subst,
        _searcher_ast: Option<&PatternAst<KilnLang>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        self.0.apply(egraph, eclass)
    }
}
