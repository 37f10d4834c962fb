//! The one progress display of the `cats` tool: an `indicatif` bar on a terminal, plain
//! lines otherwise (or with `CATGAN_PLAIN_PROGRESS` set). [`Progress`] is the display;
//! [`DataProgress`] shows what the libraries report through [`dcgan_data::Progress`].

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether stderr is a terminal (progress bars) or a pipe/file (plain lines).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CATGAN_PLAIN_PROGRESS").is_none()
}

/// A progress bar for `total` items of work, or a plain-line reporter when stderr is not a
/// terminal (one line every `plain_every`, so logs stay readable).
pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    plain_every: Duration,
}

impl Progress {
    /// Starts reporting on `total` items of `what`.
    pub fn new(what: &str, total: u64, plain_every: Duration) -> Self {
        let bar = interactive().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} {msg} (ETA {eta})",
                )
                .expect("valid template")
                .progress_chars("█▉▊▋▌▍▎▏ "),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            what: what.into(),
            total,
            done: 0,
            started: now,
            last_line: now,
            plain_every,
        }
    }

    /// Sets the position to `done` of `total`, with a status message.
    pub fn update(&mut self, done: u64, message: &str) {
        self.done = done;
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(message.to_string());
            }
            None => {
                let now = Instant::now();
                if now.duration_since(self.last_line) >= self.plain_every || done == self.total {
                    self.last_line = now;
                    eprintln!("{} {}/{} {}", self.what, done, self.total, message);
                }
            }
        }
    }

    /// Advances by `by` items.
    pub fn advance(&mut self, by: u64) {
        let done = self.done + by;
        self.update(done, "");
    }

    /// Prints a line above the bar (or as is in plain mode).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Removes the bar (the caller prints a summary).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The display of the progress the libraries report ([`dcgan_data::Progress`], which
/// `dcgan-metrics` reports through too): one [`Progress`] per piece of work (decoding a
/// folder, cropping cat faces, Inception features of a folder), named as the library names
/// it. Every command hands this to the libraries.
pub struct DataProgress {
    inner: std::sync::Mutex<Option<Progress>>,
}

impl DataProgress {
    /// Nothing shown until a library says work has started.
    pub fn new() -> Self {
        DataProgress {
            inner: std::sync::Mutex::new(None),
        }
    }
}

impl Default for DataProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl dcgan_data::Progress for DataProgress {
    fn event(&self, event: dcgan_data::ProgressEvent<'_>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            dcgan_data::ProgressEvent::Started { total, what } => {
                if let Some(previous) = inner.take() {
                    previous.finish();
                }
                *inner = Some(Progress::new(what, total, Duration::from_secs(5)));
            }
            dcgan_data::ProgressEvent::Advanced { by } => {
                if let Some(p) = inner.as_mut() {
                    p.advance(by);
                }
            }
            dcgan_data::ProgressEvent::Finished => {
                if let Some(p) = inner.take() {
                    p.finish();
                }
            }
        }
    }
}
