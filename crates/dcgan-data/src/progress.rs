//! Progress of slow work, as every catgan library reports it: the first decode of a folder
//! and CAT-dataset preparation here, Inception features in `dcgan-metrics`.
//!
//! A library announces work with [`Task::start`], reports finished items with
//! [`Task::advance`] and ends it by dropping the task; the caller's [`Progress`] hears
//! [`ProgressEvent`]s. Any `Fn(ProgressEvent) + Sync` closure is a [`Progress`], so a CLI
//! can drive a bar without the libraries depending on one (the `cats` tool's is
//! `catgan::progress::DataProgress`):
//!
//! ```ignore
//! let bar = indicatif::ProgressBar::new(0);
//! let progress = |event: ProgressEvent| match event {
//!     ProgressEvent::Started { total, what } => {
//!         bar.set_length(total);
//!         bar.set_message(what.to_string());
//!     }
//!     ProgressEvent::Advanced { by } => bar.inc(by),
//!     ProgressEvent::Finished => bar.finish_and_clear(),
//! };
//! let dataset = ImageDataset::open(dir, &config, &progress)?;
//! ```
//!
//! Events may arrive from several threads at once (decoding is parallel). One piece of
//! work runs at a time: a library finishes one before starting the next.

/// One step of progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressEvent<'a> {
    /// Work of `total` items begins; `what` names it (e.g. "decoding images").
    Started {
        /// Number of items (0 when unknown).
        total: u64,
        /// What is being done.
        what: &'a str,
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
    fn event(&self, event: ProgressEvent<'_>);
}

impl Progress for () {
    fn event(&self, _event: ProgressEvent<'_>) {}
}

impl<F: Fn(ProgressEvent<'_>) + Sync> Progress for F {
    fn event(&self, event: ProgressEvent<'_>) {
        self(event)
    }
}

/// One piece of work being reported to a [`Progress`]: [`ProgressEvent::Started`] when it
/// starts, [`ProgressEvent::Advanced`] as it goes, [`ProgressEvent::Finished`] when it is
/// dropped, so early returns (errors) finish it too.
pub struct Task<'a> {
    progress: &'a dyn Progress,
}

impl<'a> Task<'a> {
    /// Starts reporting `total` items of `what` to `progress`.
    pub fn start(progress: &'a dyn Progress, what: &str, total: u64) -> Self {
        progress.event(ProgressEvent::Started { total, what });
        Task { progress }
    }

    /// Reports `by` more items done (from any thread).
    pub fn advance(&self, by: u64) {
        self.progress.event(ProgressEvent::Advanced { by });
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.progress.event(ProgressEvent::Finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_reports_its_start_steps_and_end_even_on_early_return() {
        let events = std::sync::Mutex::new(Vec::new());
        let progress = |e: ProgressEvent<'_>| {
            let owned = match e {
                ProgressEvent::Started { total, what } => format!("start {what} {total}"),
                ProgressEvent::Advanced { by } => format!("+{by}"),
                ProgressEvent::Finished => "end".into(),
            };
            events.lock().unwrap().push(owned);
        };
        let work = |fail: bool| -> Result<(), ()> {
            let task = Task::start(&progress, "work", 3);
            task.advance(2);
            if fail {
                return Err(());
            }
            task.advance(1);
            Ok(())
        };
        work(false).unwrap();
        work(true).unwrap_err();
        assert_eq!(
            *events.lock().unwrap(),
            [
                "start work 3",
                "+2",
                "+1",
                "end",
                "start work 3",
                "+2",
                "end"
            ]
        );
    }
}
