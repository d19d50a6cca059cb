//! Errors collected instead of stopping at the first: every mistake in an
//! attribute is reported in one compile.

use proc_macro2::Span;

/// Collects errors instead of stopping at the first.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }

    /// These errors and `last`, as one (reported together).
    pub(crate) fn ending_with(mut self, last: syn::Error) -> syn::Error {
        match self.0.take() {
            Some(mut all) => {
                all.combine(last);
                all
            }
            None => last,
        }
    }
}
