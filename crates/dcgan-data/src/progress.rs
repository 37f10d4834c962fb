//! A progress hook for the slow steps (first decode of a folder, CAT-dataset preparation).
//!
//! Any `Fn(ProgressEvent) + Sync` closure is a [`Progress`], so a CLI can drive an
//! `indicatif` bar without this crate depending on it:
//!
//! ```ignore
//! let bar = indicatif::ProgressBar::new(0);
//! let progress = |event| match event {
//!     ProgressEvent::Started { total, .. } => bar.set_length(total),
//!     ProgressEvent::Advanced { by } => bar.inc(by),
//!     ProgressEvent::Finished => bar.finish_and_clear(),
//! };
//! let dataset = ImageDataset::open(dir, &config, &progress)?;
//! ```
//!
//! Events may arrive from several threads at once (decoding is parallel).

/// One step of progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    /// Work of `total` items begins; `what` names it (e.g. "decoding images").
    Started {
        /// Number of items.
        total: u64,
        /// What is being done.
        what: &'static str,
    },
    /// `by` more items are done.
    Advanced {
        /// Items finished since the last event.
        by: u64,
    },
    /// The work is done (also sent when it stops early on an error).
    Finished,
}

/// Receives [`ProgressEvent`]s. Implemented for `()` (ignore everything) and for closures.
pub trait Progress: Sync {
    /// Called for each event, possibly from several threads.
    fn event(&self, event: ProgressEvent);
}

impl Progress for () {
    fn event(&self, _event: ProgressEvent) {}
}

impl<F: Fn(ProgressEvent) + Sync> Progress for F {
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}

/// Sends [`ProgressEvent::Finished`] when dropped, so early returns finish the bar too.
pub(crate) struct FinishOnDrop<'a>(pub(crate) &'a dyn Progress);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.event(ProgressEvent::Finished);
    }
}
