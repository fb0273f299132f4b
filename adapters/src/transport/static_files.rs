//! Files of a directory served read-only over HTTP (`serve --web DIR`): a
//! web app that talks to docweave, from the same server. Only regular
//! files under the directory, by plain path segments; nothing is listed.

use std::path::{Component, Path, PathBuf};

/// Most bytes of one file served (an app bundle, not a download server).
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// A file found for a request path: its bytes and content type.
pub(crate) struct Found {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file `request` names under `root` (`/` is `index.html`), if any.
pub(crate) async fn find(root: &Path, request: &str) -> Option<Found> {
    let relative = request.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let relative = Path::new(relative);
    // Plain names only: no `..`, no root, no prefix, no `.`.
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let path: PathBuf = root.join(relative);
    let meta = smol::fs::metadata(&path).await.ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let bytes = smol::fs::read(&path).await.ok()?;
    Some(Found {
        bytes,
        content_type: content_type(&path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_under_the_root_are_found() {
        let dir = std::env::temp_dir().join(format!("docweave-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("sub/app.js"), "1").unwrap();
        smol::block_on(async {
            let index = find(&dir, "/").await.unwrap();
            assert_eq!(index.bytes, b"<p>hi</p>");
            assert!(index.content_type.starts_with("text/html"));
            assert!(find(&dir, "/sub/app.js").await.is_some());
            assert!(find(&dir, "/../etc/passwd").await.is_none());
            assert!(find(&dir, "/sub/../index.html").await.is_none());
            assert!(find(&dir, "/sub").await.is_none());
            assert!(find(&dir, "/missing.js").await.is_none());
        });
    }
}
