//! The images the node's pods run: the archives `make images` and `make
//! e2e-images` write to `target/images/` (one `<name>.oci.tar` per image, and
//! `product.refs` / `e2e.refs` naming them), imported into containerd before
//! the kubelet starts. Nothing is ever pulled: a pod whose image is not among
//! them fails as it would on a cluster without registry access.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::tools;

/// What builds the archives, for error messages.
pub const IMAGES_HINT: &str = "run `make images e2e-images` to build the images the e2e node runs";

/// One image archive and the reference it carries.
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub reference: String,
    pub archive: PathBuf,
}

/// `target/images`.
pub fn images_dir() -> PathBuf {
    tools::target_dir().join("images")
}

/// The images listed in `<set>.refs` (`product` or `e2e`), each with its archive.
pub fn image_set(set: &str) -> Result<Vec<ImageArchive>> {
    let dir = images_dir();
    let refs = dir.join(format!("{set}.refs"));
    let text = std::fs::read_to_string(&refs).with_context(|| format!("reading {}: {IMAGES_HINT}", refs.display()))?;
    let mut out = Vec::new();
    for reference in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let archive = dir.join(format!("{}.oci.tar", repository_name(reference)));
        if !archive.is_file() {
            bail!("{} (image {reference}) is missing: {IMAGES_HINT}", archive.display());
        }
        out.push(ImageArchive { reference: reference.to_string(), archive });
    }
    if out.is_empty() {
        bail!("{} lists no image: {IMAGES_HINT}", refs.display());
    }
    Ok(out)
}

/// Every image the node imports: the product images and the test images.
pub fn all() -> Result<Vec<ImageArchive>> {
    let mut v = image_set("product")?;
    v.extend(image_set("e2e")?);
    Ok(v)
}

/// The last path segment of an image reference, without tag or digest.
pub fn repository_name(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The reference of the image named `name` (e.g. `pause`, `otelcol-lb`).
pub fn reference(images: &[ImageArchive], name: &str) -> Result<String> {
    images
        .iter()
        .find(|i| repository_name(&i.reference) == name)
        .map(|i| i.reference.clone())
        .with_context(|| format!("no `{name}` image among {images:?}: {IMAGES_HINT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        assert_eq!(repository_name("localhost/otlp-lb-e2e/pause:3.10.2"), "pause");
        assert_eq!(repository_name("ghcr.io/otlp-lb/otlp-lb-operator:0.1.0"), "otlp-lb-operator");
        assert_eq!(repository_name("busybox@sha256:abc"), "busybox");
        assert_eq!(repository_name("localhost:5000/x/y"), "y");
    }
}
