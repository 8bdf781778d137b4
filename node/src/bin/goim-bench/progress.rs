//! The progress bar (indicatif, on stderr; hidden when stderr is not a terminal) and the
//! one-line phase summaries printed either way, so a CI log still tells what happened.
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `prefix`; `message` is updated as the phase goes.
pub fn bar(prefix: String, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len.max(1));
    let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Ends a bar and prints `summary` on its own line.
pub fn done(bar: ProgressBar, summary: String) {
    bar.finish_and_clear();
    eprintln!("{summary}");
}
