//! The CAT dataset (Zhang, Sun & Tang, 2008): photos `*.jpg` with landmark files `*.jpg.cat`,
//! and [`prepare`], which turns them into level, square face crops.
//!
//! # Landmark files
//! One line: `9 x1 y1 x2 y2 … x9 y9` (pixels): left eye, right eye, mouth, left ear (3
//! points), right ear (3 points).
//!
//! # Geometry of a crop ([`face_crop`])
//! 1. **Level the eyes**: θ = atan2(right eye − left eye). The crop's axes are the eye line
//!    and its perpendicular, so the eyes come out on one row. If, in that frame, the mouth
//!    is *above* the eyes (labels swapped, or the cat upside down), the frame is turned
//!    by 180° so the face comes out upright.
//! 2. **Face box**: the bounding box of all 9 landmarks in the levelled frame (ear tips to
//!    mouth, ear to ear). The crop is the square of side `max(box width, box height) ×
//!    (1 + margin)` centred on the box (margin 0 by default: the ears span the face's width,
//!    and the square's extra height beyond the box adds the chin).
//! 3. **Clip to the image**: if the square would reach outside the photo, it shrinks about
//!    the same centre (the face stays centred, no invented border pixels): the largest side
//!    `s` with `s/2 · (|cos θ| + |sin θ|) ≤` the centre's distance to each border.
//! 4. **Sample**: the crop is `floor(s)` pixels square at the photo's own resolution
//!    (bilinear interpolation, no rescaling: the loader resizes later with Lanczos3), and is
//!    dropped if smaller than `min_size` (default 64).

use std::path::{Path, PathBuf};

use burn::config::Config;
use image::{Rgb, RgbImage};
use rayon::prelude::*;

use crate::decode::{self, DecodeLimits, SkippedFile};
use crate::error::Error;
use crate::progress::{Progress, Task};

/// The 9 landmarks of one cat, in pixels `(x, y)`, in file order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Landmarks(pub [(f32, f32); 9]);

impl Landmarks {
    /// Parses the content of a `.cat` file.
    ///
    /// # Errors
    /// A human-readable reason when the text is not `9` followed by 18 finite numbers, or
    /// when both eyes are at the same point.
    ///
    /// ```
    /// use dcgan_data::cat_dataset::Landmarks;
    /// let l = Landmarks::parse("9 10 20 30 20 20 40 5 5 8 0 12 6 28 6 32 0 35 5 ").unwrap();
    /// assert_eq!(l.left_eye(), (10.0, 20.0));
    /// assert!(Landmarks::parse("9 1 2 3").is_err());
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut tokens = text.split_whitespace();
        let count = tokens.next().ok_or("empty landmark file")?;
        match count.parse::<u32>() {
            Ok(9) => {}
            Ok(n) => return Err(format!("starts with {n}; expected 9 landmarks")),
            Err(_) => return Err(format!("starts with `{count}`; expected the count 9")),
        }
        let values = tokens
            .map(|t| {
                t.parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("`{t}` is not a number"))
            })
            .collect::<std::result::Result<Vec<f32>, String>>()?;
        if values.len() != 18 {
            return Err(format!(
                "has {} coordinates after the count; expected 18 (9 x y pairs)",
                values.len()
            ));
        }
        let points = std::array::from_fn(|i| (values[2 * i], values[2 * i + 1]));
        let l = Landmarks(points);
        let (a, b) = (l.left_eye(), l.right_eye());
        if (a.0 - b.0).hypot(a.1 - b.1) < 1.0 {
            return Err("both eyes at the same point".into());
        }
        Ok(l)
    }

    /// Left eye (landmark 1).
    pub fn left_eye(&self) -> (f32, f32) {
        self.0[0]
    }

    /// Right eye (landmark 2).
    pub fn right_eye(&self) -> (f32, f32) {
        self.0[1]
    }

    /// Mouth (landmark 3).
    pub fn mouth(&self) -> (f32, f32) {
        self.0[2]
    }
}

/// A square face crop in a photo: centre, orientation and side, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceCrop {
    /// Centre of the square in the photo.
    pub center: (f32, f32),
    /// Direction of the crop's x axis in the photo, radians (the eye line, left → right).
    pub angle: f32,
    /// Side of the square after clipping, in pixels (not rounded).
    pub side: f32,
}

/// How [`prepare`] crops the faces.
#[derive(Config, Debug)]
pub struct PrepareConfig {
    /// Crops with a smaller side (in photo pixels, after clipping) are dropped.
    #[config(default = 64)]
    pub min_size: u32,
    /// Extra room around the landmark box, as a fraction of its larger side.
    #[config(default = 0.0)]
    pub margin: f32,
    /// Limits against decompression bombs.
    #[config(default = "DecodeLimits::default()")]
    pub limits: DecodeLimits,
}

/// The square around the face (see the [module docs](self)), or `None` if the face's
/// centre is outside the `width × height` photo.
pub fn face_crop(landmarks: &Landmarks, width: u32, height: u32, margin: f32) -> Option<FaceCrop> {
    let (l, r, m) = (
        landmarks.left_eye(),
        landmarks.right_eye(),
        landmarks.mouth(),
    );
    let mid = ((l.0 + r.0) / 2.0, (l.1 + r.1) / 2.0);
    let mut angle = (r.1 - l.1).atan2(r.0 - l.0);
    // Levelled frame: x along the eye line, y perpendicular (downwards in the face).
    let to_frame = |p: (f32, f32), a: f32| {
        let (dx, dy) = (p.0 - mid.0, p.1 - mid.1);
        let (s, c) = a.sin_cos();
        (dx * c + dy * s, -dx * s + dy * c)
    };
    if to_frame(m, angle).1 < 0.0 {
        angle += std::f32::consts::PI;
    }
    let framed: Vec<(f32, f32)> = landmarks.0.iter().map(|&p| to_frame(p, angle)).collect();
    let (min_x, max_x, min_y, max_y) = framed.iter().fold(
        (f32::MAX, f32::MIN, f32::MAX, f32::MIN),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    let side = (max_x - min_x).max(max_y - min_y) * (1.0 + margin.max(0.0));
    // Box centre back in photo coordinates.
    let (u, v) = ((min_x + max_x) / 2.0, (min_y + max_y) / 2.0);
    let (s, c) = angle.sin_cos();
    let center = (mid.0 + u * c - v * s, mid.1 + u * s + v * c);
    let (w, h) = (width as f32, height as f32);
    let room = center.0.min(w - center.0).min(center.1).min(h - center.1);
    if room <= 0.0 {
        return None;
    }
    let max_side = 2.0 * room / (c.abs() + s.abs());
    Some(FaceCrop {
        center,
        angle,
        side: side.min(max_side),
    })
}

/// Samples `crop` from `image` into a `floor(side)`-pixel square (bilinear).
pub fn extract(image: &RgbImage, crop: &FaceCrop) -> RgbImage {
    // A hair of tolerance so that a side of 99.99997 (float rotation) gives 100 pixels.
    let n = (crop.side + 1e-3).floor().max(0.0) as u32;
    let (s, c) = crop.angle.sin_cos();
    let (w, h) = image.dimensions();
    let half = n as f32 / 2.0;
    let mut out = RgbImage::new(n, n);
    for (j, i, px) in out.enumerate_pixels_mut() {
        let (u, v) = (j as f32 + 0.5 - half, i as f32 + 0.5 - half);
        // Continuous photo coordinates, then pixel-index space (centres at integers).
        let x = crop.center.0 + u * c - v * s - 0.5;
        let y = crop.center.1 + u * s + v * c - 0.5;
        *px = bilinear(
            image,
            x.clamp(0.0, (w - 1) as f32),
            y.clamp(0.0, (h - 1) as f32),
        );
    }
    out
}

fn bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = image.dimensions();
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |x, y| image.get_pixel(x, y).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    Rgb(std::array::from_fn(|k| {
        let top = f32::from(a[k]) * (1.0 - fx) + f32::from(b[k]) * fx;
        let bottom = f32::from(c[k]) * (1.0 - fx) + f32::from(d[k]) * fx;
        (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
    }))
}

/// What [`prepare`] did, file by file.
#[derive(Clone, Debug, Default)]
pub struct PrepareReport {
    /// Crops written (paths in the output folder).
    pub written: Vec<PathBuf>,
    /// Photos whose face crop was smaller than `min_size`: photo and crop side.
    pub too_small: Vec<(PathBuf, u32)>,
    /// Landmark files that could not be used: `.cat` path and reason.
    pub malformed: Vec<(PathBuf, String)>,
    /// Photos that could not be decoded.
    pub unreadable: Vec<SkippedFile>,
    /// Photos without a `.cat` file (ignored).
    pub unannotated: usize,
}

enum Outcome {
    Written(PathBuf),
    TooSmall(PathBuf, u32),
    Malformed(PathBuf, String),
    Unreadable(SkippedFile),
}

/// Crops every annotated cat face under `cat_dir` (recursively) into PNGs under `out_dir`,
/// mirroring the folder structure (`CAT_00/00000001_000.jpg` → `CAT_00/00000001_000.png`).
///
/// Malformed landmark files, missing or undecodable photos and too-small crops are reported,
/// not fatal. Each PNG is written atomically ([`crate::atomic`]), so an interrupted run
/// leaves no truncated image.
///
/// # Errors
/// [`Error::NotFound`]/[`Error::NotADirectory`] for `cat_dir`, [`Error::EmptyFolder`] if it
/// has no `.cat` file, [`Error::InvalidConfig`] if `out_dir` is `cat_dir`, [`Error::Io`] /
/// [`Error::Encode`] if the output cannot be written.
pub fn prepare(
    cat_dir: &Path,
    out_dir: &Path,
    config: &PrepareConfig,
    progress: &dyn Progress,
) -> crate::Result<PrepareReport> {
    match std::fs::metadata(cat_dir) {
        Err(_) => {
            return Err(Error::NotFound {
                path: cat_dir.into(),
            })
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::NotADirectory {
                path: cat_dir.into(),
            })
        }
        Ok(_) => {}
    }
    if let (Ok(a), Ok(b)) = (
        std::fs::canonicalize(cat_dir),
        std::fs::canonicalize(out_dir),
    ) {
        if a == b {
            return Err(Error::InvalidConfig {
                name: "out",
                value: out_dir.display().to_string(),
                expected: "a folder other than the CAT dataset folder",
            });
        }
    }
    let out_canonical = std::fs::canonicalize(out_dir).ok();
    let mut cats = Vec::new();
    let mut images = Vec::new();
    let walker = walkdir::WalkDir::new(cat_dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            // Do not walk into the output folder when it lies inside the dataset folder.
            !(e.file_type().is_dir()
                && out_canonical.is_some()
                && std::fs::canonicalize(e.path()).ok() == out_canonical)
        });
    for entry in walker.flatten() {
        let path = entry.path();
        if !entry.file_type().is_file() {
            continue;
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("cat"))
        {
            cats.push(path.to_path_buf());
        } else if crate::scan::has_image_extension(path) {
            images.push(path.to_path_buf());
        }
    }
    if cats.is_empty() {
        return Err(Error::EmptyFolder {
            path: cat_dir.into(),
        });
    }
    cats.sort();
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::io("cannot create output folder", out_dir, e))?;

    let task = Task::start(progress, "cropping cat faces", cats.len() as u64);
    let outcomes: Vec<crate::Result<Outcome>> = cats
        .par_iter()
        .map(|cat| {
            let outcome = prepare_one(cat, cat_dir, out_dir, config);
            task.advance(1);
            outcome
        })
        .collect();

    let mut report = PrepareReport::default();
    for outcome in outcomes {
        match outcome? {
            Outcome::Written(p) => report.written.push(p),
            Outcome::TooSmall(p, side) => report.too_small.push((p, side)),
            Outcome::Malformed(p, why) => report.malformed.push((p, why)),
            Outcome::Unreadable(s) => report.unreadable.push(s),
        }
    }
    let annotated: std::collections::HashSet<PathBuf> =
        cats.iter().map(|c| c.with_extension("")).collect();
    report.unannotated = images.iter().filter(|p| !annotated.contains(*p)).count();
    Ok(report)
}

fn prepare_one(
    cat: &Path,
    cat_dir: &Path,
    out_dir: &Path,
    config: &PrepareConfig,
) -> crate::Result<Outcome> {
    let photo = cat.with_extension(""); // `x.jpg.cat` -> `x.jpg`
    let text = match std::fs::read(cat) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return Ok(Outcome::Malformed(cat.into(), format!("cannot read: {e}"))),
    };
    let landmarks = match Landmarks::parse(&text) {
        Ok(l) => l,
        Err(why) => return Ok(Outcome::Malformed(cat.into(), why)),
    };
    if !photo.is_file() {
        return Ok(Outcome::Malformed(
            cat.into(),
            format!("photo `{}` not found next to it", photo.display()),
        ));
    }
    let image = match decode::decode_file(&photo, config.limits) {
        Ok(img) => decode::to_rgb8(img),
        Err(reason) => {
            return Ok(Outcome::Unreadable(SkippedFile {
                path: photo,
                reason,
            }))
        }
    };
    let (w, h) = image.dimensions();
    let Some(crop) = face_crop(&landmarks, w, h, config.margin) else {
        return Ok(Outcome::Malformed(
            cat.into(),
            format!("face centre lies outside the {w}x{h} photo"),
        ));
    };
    let side = (crop.side + 1e-3).floor().max(0.0) as u32;
    if side < config.min_size {
        return Ok(Outcome::TooSmall(photo, side));
    }
    let face = extract(&image, &crop);
    let relative = photo.strip_prefix(cat_dir).unwrap_or(&photo);
    let target = out_dir.join(relative).with_extension("png");
    write_png_atomically(&face, &target)?;
    Ok(Outcome::Written(target))
}

/// Writes `image` as PNG to `target`, atomically ([`crate::atomic`]).
pub(crate) fn write_png_atomically(image: &RgbImage, target: &Path) -> crate::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create output folder", dir, e))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::Encode {
            path: target.into(),
            reason: e.to_string(),
        })?;
    crate::atomic::write_atomically(target, png.get_ref())
        .map_err(|e| Error::io("cannot write", target, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACE: Rgb<u8> = Rgb([40, 160, 40]);
    const LEFT_EYE: Rgb<u8> = Rgb([255, 0, 0]);
    const RIGHT_EYE: Rgb<u8> = Rgb([0, 0, 255]);
    const MOUTH: Rgb<u8> = Rgb([255, 255, 0]);

    /// Landmark offsets of the synthetic cat, in its own upright frame (pixels), relative to
    /// the eyes' midpoint. Box: x −50..50 (100), y −70..28 (98) → square side 100, centred at
    /// (0, −21).
    const OFFSETS: [(f32, f32); 9] = [
        (-24.0, 0.0),   // left eye
        (24.0, 0.0),    // right eye
        (0.0, 28.0),    // mouth
        (-50.0, -40.0), // left ear
        (-40.0, -70.0),
        (-20.0, -44.0),
        (20.0, -44.0), // right ear
        (40.0, -70.0),
        (50.0, -40.0),
    ];

    /// Draws the synthetic cat with its eyes' midpoint at `mid`, turned by `degrees`, and
    /// returns the photo and its landmarks.
    fn synthetic_cat(w: u32, h: u32, mid: (f32, f32), degrees: f32) -> (RgbImage, Landmarks) {
        let (s, c) = degrees.to_radians().sin_cos();
        let place = |(u, v): (f32, f32)| (mid.0 + u * c - v * s, mid.1 + u * s + v * c);
        let mut img = RgbImage::from_pixel(w, h, Rgb([128, 128, 128]));
        for (x, y, px) in img.enumerate_pixels_mut() {
            // Back to the cat's frame.
            let (dx, dy) = (x as f32 + 0.5 - mid.0, y as f32 + 0.5 - mid.1);
            let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
            let near = |p: (f32, f32), r: f32| (u - p.0).abs() <= r && (v - p.1).abs() <= r;
            *px = if near(OFFSETS[0], 4.0) {
                LEFT_EYE
            } else if near(OFFSETS[1], 4.0) {
                RIGHT_EYE
            } else if near(OFFSETS[2], 4.0) {
                MOUTH
            } else if u.abs() <= 40.0 && (-50.0..=28.0).contains(&v) {
                FACE
            } else {
                *px
            };
        }
        (img, Landmarks(OFFSETS.map(place)))
    }

    fn centroid(img: &RgbImage, colour: Rgb<u8>) -> (f32, f32) {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for (x, y, p) in img.enumerate_pixels() {
            let d: i32 = (0..3)
                .map(|k| (p.0[k] as i32 - colour.0[k] as i32).abs())
                .sum();
            if d < 60 {
                sx += x as f32 + 0.5;
                sy += y as f32 + 0.5;
                n += 1.0;
            }
        }
        assert!(n > 0.0, "colour {colour:?} not found");
        (sx / n, sy / n)
    }

    #[test]
    fn tilted_faces_come_out_level_and_centred() {
        // In the 100 px crop (centre at (0, −21) of the cat frame), the left eye is at
        // (−24, 21) from the centre → pixel (26, 71); right eye (74, 71); mouth (50, 99)...
        // the mouth marker is clipped at the bottom edge, so check the eyes and the face.
        for degrees in [0.0, 30.0, -45.0, 180.0, 100.0] {
            let (img, landmarks) = synthetic_cat(400, 360, (200.0, 190.0), degrees);
            let crop = face_crop(&landmarks, 400, 360, 0.0).unwrap();
            assert!(
                (crop.side - 100.0).abs() < 1e-3,
                "{degrees}°: side {}",
                crop.side
            );
            let face = extract(&img, &crop);
            assert_eq!(face.dimensions(), (100, 100), "{degrees}°");
            let (l, r) = (centroid(&face, LEFT_EYE), centroid(&face, RIGHT_EYE));
            assert!(
                (l.0 - 26.0).abs() < 1.0 && (l.1 - 71.0).abs() < 1.0,
                "{degrees}°: {l:?}"
            );
            assert!(
                (r.0 - 74.0).abs() < 1.0 && (r.1 - 71.0).abs() < 1.0,
                "{degrees}°: {r:?}"
            );
        }
    }

    #[test]
    fn swapped_eye_labels_still_give_an_upright_face() {
        let (img, mut landmarks) = synthetic_cat(400, 360, (200.0, 190.0), 20.0);
        landmarks.0.swap(0, 1);
        let face = extract(&img, &face_crop(&landmarks, 400, 360, 0.0).unwrap());
        // Upright: the eyes on row 71 (upside down they would be on row 29).
        let eyes_y = centroid(&face, LEFT_EYE).1;
        assert!((eyes_y - 71.0).abs() < 1.0, "eyes on row {eyes_y}");
        assert!((centroid(&face, RIGHT_EYE).1 - eyes_y).abs() < 1.0);
        // The red eye, labelled "right", is on the image's left.
        assert!(centroid(&face, LEFT_EYE).0 < centroid(&face, RIGHT_EYE).0);
    }

    #[test]
    fn crops_near_the_border_shrink_about_the_centre() {
        // Face centre at (200, 169); 40 px from the left border → side 80 (no rotation).
        let (img, landmarks) = synthetic_cat(400, 360, (40.0, 190.0), 0.0);
        let crop = face_crop(&landmarks, 400, 360, 0.0).unwrap();
        assert!((crop.side - 80.0).abs() < 1e-3, "{}", crop.side);
        assert!((crop.center.0 - 40.0).abs() < 1e-3 && (crop.center.1 - 169.0).abs() < 1e-3);
        assert_eq!(extract(&img, &crop).dimensions(), (80, 80));
        // Rotated by 45°, the corners reach √2 further: side 80/√2.
        let (_, landmarks) = synthetic_cat(400, 360, (40.0, 190.0), 45.0);
        let crop = face_crop(&landmarks, 400, 360, 0.0).unwrap();
        let room = crop.center.0;
        assert!((crop.side - 2.0 * room / std::f32::consts::SQRT_2).abs() < 1e-2);
    }

    #[test]
    fn landmark_parsing_reports_reasons() {
        assert!(Landmarks::parse("").unwrap_err().contains("empty"));
        assert!(Landmarks::parse("8 1 2")
            .unwrap_err()
            .contains("expected 9"));
        assert!(Landmarks::parse("nine 1 2")
            .unwrap_err()
            .contains("count 9"));
        let short = "9 1 2 3 4 5 6";
        assert!(Landmarks::parse(short).unwrap_err().contains("expected 18"));
        let nan = format!("9 {} x", "1 ".repeat(17));
        assert!(Landmarks::parse(&nan)
            .unwrap_err()
            .contains("`x` is not a number"));
        let same = format!("9 5 5 5 5 {}", "1 ".repeat(14));
        assert!(Landmarks::parse(&same).unwrap_err().contains("same point"));
        // Real files end with a space and may have a newline.
        let ok = format!("9 {}\n", "3 ".repeat(18)).replacen("3 3", "1 2", 1);
        assert!(Landmarks::parse(&ok).is_ok(), "{ok}");
    }

    fn write_cat(dir: &Path, name: &str, img: &RgbImage, landmarks: &Landmarks) {
        img.save(dir.join(name)).unwrap();
        let mut text = String::from("9 ");
        for (x, y) in landmarks.0 {
            text.push_str(&format!("{} {} ", x.round(), y.round()));
        }
        std::fs::write(dir.join(format!("{name}.cat")), text).unwrap();
    }

    #[test]
    fn prepare_writes_reports_and_skips() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("CAT_00");
        std::fs::create_dir_all(&src).unwrap();
        let (img, l) = synthetic_cat(400, 360, (200.0, 190.0), 15.0);
        write_cat(&src, "a.jpg", &img, &l);
        // Too small: the same cat in a photo where it is 40 px from the border.
        let (img, l) = synthetic_cat(400, 360, (20.0, 190.0), 0.0);
        write_cat(&src, "b.jpg", &img, &l);
        // Malformed landmarks, a .cat without photo, an undecodable photo, a bare photo.
        img.save(src.join("c.jpg")).unwrap();
        std::fs::write(src.join("c.jpg.cat"), "9 1 2 3").unwrap();
        std::fs::write(
            src.join("d.jpg.cat"),
            "9 10 10 50 10 30 40 0 0 0 0 0 0 0 0 0 0 0 0",
        )
        .unwrap();
        std::fs::write(src.join("e.jpg"), b"not a jpeg").unwrap();
        std::fs::write(
            src.join("e.jpg.cat"),
            "9 10 10 50 10 30 40 0 0 0 0 0 0 0 0 0 0 0 0",
        )
        .unwrap();
        img.save(src.join("f.jpg")).unwrap();

        let out = tmp.path().join("faces");
        let report = prepare(tmp.path(), &out, &PrepareConfig::new(), &()).unwrap();
        assert_eq!(report.written, vec![out.join("CAT_00/a.png")]);
        // Landmarks were rounded to whole pixels in the file: the side is 100 ± 1.
        let face = image::open(&report.written[0]).unwrap();
        assert!((99..=101).contains(&face.width()) && face.width() == face.height());
        assert_eq!(report.too_small, vec![(src.join("b.jpg"), 40)]);
        let malformed: Vec<_> = report.malformed.iter().map(|m| m.0.clone()).collect();
        assert_eq!(
            malformed,
            vec![src.join("c.jpg.cat"), src.join("d.jpg.cat")]
        );
        assert!(report.malformed[0].1.contains("expected 18"));
        assert!(report.malformed[1].1.contains("not found"));
        assert_eq!(report.unreadable.len(), 1);
        assert_eq!(report.unreadable[0].path, src.join("e.jpg"));
        assert_eq!(report.unannotated, 1);
        // No temporary files left.
        let names: Vec<_> = std::fs::read_dir(out.join("CAT_00"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn prepare_refuses_bad_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let err = prepare(
            &tmp.path().join("x"),
            tmp.path(),
            &PrepareConfig::new(),
            &(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        let err = prepare(
            tmp.path(),
            &tmp.path().join("o"),
            &PrepareConfig::new(),
            &(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::EmptyFolder { .. }));
        std::fs::write(tmp.path().join("a.jpg.cat"), "9").unwrap();
        let err = prepare(tmp.path(), tmp.path(), &PrepareConfig::new(), &()).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { name: "out", .. }));
    }
}
