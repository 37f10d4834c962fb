//! TensorBoard event files, so that `tensorboard --logdir runs` shows every run: scalars
//! (losses, D's outputs, throughput, learning rates, FID), the preview grids as images and
//! the run's settings as text.
//!
//! The format is TensorFlow's, written directly (no TensorFlow, no generated code):
//! a file `events.out.tfevents.<seconds>.<microseconds>.<host>.<pid>` of records, each
//! `length (u64 LE) · masked CRC32C of the length · an Event protobuf · masked CRC32C of
//! it`. The messages are the few fields of `event.proto` / `summary.proto` /
//! `tensor.proto` used here, declared with prost's derive (field numbers as in TensorFlow's
//! `.proto` files). TensorBoard reads every events file in a folder, so a resumed run
//! adds a new file; it starts with a `SessionLog START` at the first step it trains, which
//! tells TensorBoard to drop what an earlier session wrote from that step on (steps past
//! the checkpoint that a crash lost, as `metrics.csv` drops them).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;

/// Tags written by [`EventWriter`] for a training run (what TensorBoard lists).
pub mod tags {
    /// D's loss.
    pub const D_LOSS: &str = "loss/d";
    /// G's loss.
    pub const G_LOSS: &str = "loss/g";
    /// Mean D output on real images, D(x) (a probability for BCE-style losses).
    pub const D_REAL: &str = "D/real D(x)";
    /// Mean D output on generated images, D(G(z)).
    pub const D_FAKE: &str = "D/fake D(G(z))";
    /// Training images per second.
    pub const IMG_PER_S: &str = "speed/img_per_s";
    /// D's learning rate.
    pub const LR_D: &str = "lr/d";
    /// G's learning rate.
    pub const LR_G: &str = "lr/g";
    /// FID measured during training.
    pub const FID: &str = "quality/fid";
    /// The preview grids.
    pub const SAMPLES: &str = "samples";
    /// The run's settings (`config.json`).
    pub const CONFIG: &str = "config";
}

/// Writes one TensorBoard events file.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
    last_flush: Instant,
}

/// A failure to write the events file, naming it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the TensorBoard events file {}: {source} (run with --no-tensorboard to train without it)", .path.display())]
pub struct EventWriteError {
    /// The events file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

/// How often buffered events reach the file when nothing else flushes them, so a running
/// TensorBoard sees the run move.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

impl EventWriter {
    /// Creates a new events file in `dir` (never replacing one) and writes its header
    /// event. `resumed_at`: the step a resumed run continues from (a `SessionLog START` at
    /// the step after it).
    pub fn create(dir: &Path, resumed_at: Option<u64>) -> Result<Self, EventWriteError> {
        // TensorBoard reads a folder's files in name order: the time leads, to the
        // microsecond, so a resumed run's file sorts after the one before it.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let base = format!(
            "events.out.tfevents.{:010}.{:06}.{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            hostname(),
            std::process::id()
        );
        // Two writers of one process in the same second (a resume in a test, say) get
        // numbered names; nothing is ever replaced.
        let mut attempt = 0;
        let (file, path) = loop {
            let path = match attempt {
                0 => dir.join(&base),
                n => dir.join(format!("{base}.{n}")),
            };
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1
                }
                Err(source) => return Err(EventWriteError { path, source }),
            }
        };
        let mut writer = EventWriter {
            out: BufWriter::new(file),
            path,
            last_flush: Instant::now(),
        };
        writer.write(0, What::FileVersion("brain.Event:2".into()))?;
        if let Some(step) = resumed_at {
            writer.write(
                step + 1,
                What::SessionLog(SessionLog {
                    status: SESSION_START,
                    msg: format!("resumed after step {step}"),
                }),
            )?;
        }
        writer.flush()?;
        Ok(writer)
    }

    /// A writer on an existing file (tests: `/dev/full`, where every write fails).
    #[cfg(test)]
    pub(crate) fn writing_to(path: &Path) -> Self {
        EventWriter {
            out: BufWriter::new(File::options().write(true).open(path).unwrap()),
            path: path.to_path_buf(),
            last_flush: Instant::now(),
        }
    }

    /// The events file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars at `step`, as one event (`(tag, value)` pairs).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), EventWriteError> {
        let value = values
            .iter()
            .map(|&(tag, v)| Value {
                tag: tag.into(),
                metadata: None,
                kind: Some(Kind::SimpleValue(v as f32)),
            })
            .collect();
        self.write(step, What::Summary(Summary { value }))?;
        self.flush_if_due()
    }

    /// A PNG image (already encoded) of `width`×`height` RGB pixels at `step`.
    pub fn png(
        &mut self,
        tag: &str,
        step: u64,
        png: Vec<u8>,
        width: u32,
        height: u32,
    ) -> Result<(), EventWriteError> {
        let image = Image {
            height: height as i32,
            width: width as i32,
            colorspace: 3,
            encoded_image_string: png,
        };
        let value = Value {
            tag: tag.into(),
            metadata: None,
            kind: Some(Kind::Image(image)),
        };
        self.write(step, What::Summary(Summary { value: vec![value] }))?;
        self.flush()
    }

    /// Markdown text at `step` (TensorBoard's Text tab).
    pub fn text(&mut self, tag: &str, step: u64, markdown: &str) -> Result<(), EventWriteError> {
        let tensor = TensorProto {
            dtype: DT_STRING,
            tensor_shape: Some(TensorShape { dim: Vec::new() }),
            string_val: vec![markdown.as_bytes().to_vec()],
        };
        let metadata = SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "text".into(),
                content: Vec::new(),
            }),
        };
        let value = Value {
            tag: tag.into(),
            metadata: Some(metadata),
            kind: Some(Kind::Tensor(tensor)),
        };
        self.write(step, What::Summary(Summary { value: vec![value] }))?;
        self.flush()
    }

    /// Writes buffered events to the file.
    pub fn flush(&mut self) -> Result<(), EventWriteError> {
        self.last_flush = Instant::now();
        self.out.flush().map_err(|source| self.error(source))
    }

    fn flush_if_due(&mut self) -> Result<(), EventWriteError> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    fn write(&mut self, step: u64, what: What) -> Result<(), EventWriteError> {
        let event = Event {
            wall_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            step: step as i64,
            what: Some(what),
        };
        write_record(&mut self.out, &event.encode_to_vec()).map_err(|source| self.error(source))
    }

    fn error(&self, source: io::Error) -> EventWriteError {
        EventWriteError {
            path: self.path.clone(),
            source,
        }
    }
}

/// One TFRecord: the length and the data, each followed by its masked CRC32C.
fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let length = (data.len() as u64).to_le_bytes();
    out.write_all(&length)?;
    out.write_all(&masked_crc32c(&length).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// TFRecord's checksum: CRC32C (Castagnoli), rotated right by 15 bits plus a constant, so
/// that a CRC of data containing CRCs stays well distributed.
fn masked_crc32c(data: &[u8]) -> u32 {
    const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let crc = CASTAGNOLI.checksum(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The machine's name for the file name (TensorBoard's convention), or `localhost`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

// The subset of TensorFlow's protobuf messages used here (tensorflow/core/util/event.proto,
// tensorflow/core/framework/summary.proto, tensor.proto, tensor_shape.proto).

/// `SessionLog.SessionStatus.START`.
const SESSION_START: i32 = 1;
/// `DataType.DT_STRING`.
const DT_STRING: i32 = 7;

#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 6")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "6")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, Message)]
struct SessionLog {
    #[prost(int32, tag = "1")]
    status: i32,
    #[prost(string, tag = "3")]
    msg: String,
}

#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<Value>,
}

#[derive(Clone, PartialEq, Message)]
struct Value {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Kind", tags = "2, 4, 8")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

#[derive(Clone, PartialEq, Message)]
struct Image {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
}

#[derive(Clone, PartialEq, Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    content: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    string_val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShape {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the records back, checking both checksums of each.
    fn read_events(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let length: [u8; 8] = bytes[at..at + 8].try_into().unwrap();
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(&length));
            let n = u64::from_le_bytes(length) as usize;
            let data = &bytes[at + 12..at + 12 + n];
            let crc = u32::from_le_bytes(bytes[at + 12 + n..at + 16 + n].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(data));
            events.push(Event::decode(data).unwrap());
            at += 16 + n;
        }
        events
    }

    #[test]
    fn the_checksum_is_masked_crc32c() {
        // CRC32C's check value ("123456789" → 0xE3069283), then TFRecord's mask.
        let crc: u32 = 0xE306_9283;
        let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), masked);
        assert_ne!(masked_crc32c(b"123456780"), masked);
    }

    #[test]
    fn events_round_trip_with_their_steps_tags_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path(), Some(40)).unwrap();
        writer
            .scalars(41, &[(tags::D_LOSS, 1.25), (tags::G_LOSS, 0.5)])
            .unwrap();
        writer.png(tags::SAMPLES, 41, vec![1, 2, 3], 8, 4).unwrap();
        writer.text(tags::CONFIG, 0, "`lr` 2e-4").unwrap();
        let path = writer.path().to_path_buf();
        drop(writer);
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("events.out.tfevents."));

        let events = read_events(&path);
        assert_eq!(events.len(), 5);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        match &events[1].what {
            Some(What::SessionLog(log)) => assert_eq!((events[1].step, log.status), (41, 1)),
            other => panic!("{other:?}"),
        }
        let Some(What::Summary(scalars)) = &events[2].what else {
            panic!("{:?}", events[2]);
        };
        assert_eq!(events[2].step, 41);
        let pairs: Vec<_> = scalars
            .value
            .iter()
            .map(|v| (v.tag.as_str(), v.kind.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                (tags::D_LOSS, Some(Kind::SimpleValue(1.25))),
                (tags::G_LOSS, Some(Kind::SimpleValue(0.5)))
            ]
        );
        let Some(What::Summary(image)) = &events[3].what else {
            panic!("{:?}", events[3]);
        };
        match &image.value[0].kind {
            Some(Kind::Image(i)) => {
                assert_eq!(
                    (i.width, i.height, &i.encoded_image_string[..]),
                    (8, 4, &[1u8, 2, 3][..])
                )
            }
            other => panic!("{other:?}"),
        }
        let Some(What::Summary(text)) = &events[4].what else {
            panic!("{:?}", events[4]);
        };
        assert_eq!(
            text.value[0]
                .metadata
                .as_ref()
                .unwrap()
                .plugin_data
                .as_ref()
                .unwrap()
                .plugin_name,
            "text"
        );
        match &text.value[0].kind {
            Some(Kind::Tensor(t)) => assert_eq!(t.string_val, [b"`lr` 2e-4".to_vec()]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_writer_in_the_same_folder_gets_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = EventWriter::create(dir.path(), None).unwrap();
        let b = EventWriter::create(dir.path(), Some(3)).unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(read_events(a.path()).len(), 1);
        assert_eq!(read_events(b.path()).len(), 2);
    }

    #[test]
    fn an_unwritable_folder_is_a_clear_error() {
        let err = EventWriter::create(Path::new("/nonexistent/catgan-run"), None)
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/catgan-run/events.out.tfevents."),
            "{text}"
        );
        assert!(text.contains("--no-tensorboard"), "{text}");
    }
}
