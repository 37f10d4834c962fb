//! Pool3 features of image files as JSON, in the format of
//! `benches/reference/fid_reference.py features` (for comparing with the reference).
//!
//! ```text
//! cargo run -p dcgan-metrics --example features -- OUT.json IMG...
//! ```

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use dcgan_metrics::{load_rgb, FidEvaluator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: features OUT.json IMG...".into());
    }
    let device = Default::default();
    let eval = FidEvaluator::<Flex>::load(None, &device)?;
    let mut images = Vec::new();
    for path in &args[1..] {
        let img = load_rgb(path.as_ref())?;
        let f_dir = eval.features_of_images(std::slice::from_ref(&img), &())?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut chw = Vec::with_capacity(3 * h * w);
        for c in 0..3 {
            chw.extend(img.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
        }
        let t = Tensor::<Flex, 4>::from_data(TensorData::new(chw, [1, 3, h, w]), &device);
        let f_gen = eval.features_of_generated(t)?;
        images.push(serde_json::json!({
            "file": path.rsplit('/').next().unwrap_or(path),
            "features_dir_path": f_dir.row(0),
            "features_tensor_path": f_gen.row(0),
        }));
    }
    let out = serde_json::json!({ "source": "dcgan-metrics", "images": images });
    std::fs::write(&args[0], serde_json::to_string(&out)?)?;
    Ok(())
}
