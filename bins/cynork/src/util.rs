//! Small helpers: terminal checks, JSON output, word splitting, durations, prompts,
//! a progress line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::error::{CliError, CliResult};

/// Whether stdout is a terminal.
pub fn stdout_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stderr is a terminal.
pub fn stderr_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdin is a terminal.
pub fn stdin_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Whether colour is allowed at all (`NO_COLOR` unset or empty).
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Pretty JSON (2-space indent) with a trailing newline.
pub fn json_text(v: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) {
    out(&json_text(v));
}

/// Writes text to stdout (ignoring a closed pipe).
pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Writes a line to stdout.
pub fn outln(s: &str) {
    out(&format!("{s}\n"));
}

/// Splits a line into words on spaces and tabs; double quotes group (no escapes).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Parses a Go-style duration (`2s`, `500ms`, `1m30s`, `1h`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = s.parse::<f64>() {
        return dur_from_secs(n, s);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    dur_from_secs(total, s)
}

fn dur_from_secs(n: f64, s: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(n).map_err(|_| format!("invalid duration {s:?}"))
}

/// A duration as Go prints it (`2s`, `1m30s`, `1.5s`, `500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let h = (secs / 3600.0).floor() as u64;
    let m = ((secs - h as f64 * 3600.0) / 60.0).floor() as u64;
    let s = secs - h as f64 * 3600.0 - m as f64 * 60.0;
    let s_txt = if (s - s.round()).abs() < 1e-9 {
        format!("{}s", s.round() as u64)
    } else {
        format!("{}s", (s * 1000.0).round() / 1000.0)
    };
    match (h, m) {
        (0, 0) => s_txt,
        (0, m) => format!("{m}m{s_txt}"),
        (h, m) => format!("{h}h{m}m{s_txt}"),
    }
}

/// A polling interval flag: parsed, at least one second.
pub fn interval_flag(s: &str, flag: &str) -> CliResult<Duration> {
    let d = parse_duration(s).map_err(|e| CliError::usage(format!("invalid {flag}: {e}")))?;
    Ok(d.max(Duration::from_secs(1)))
}

/// Asks `question` on stderr and reads one word from stdin; true only for `y`/`Y`.
pub fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).unwrap_or(0) == 0 {
        return false;
    }
    matches!(line.split_whitespace().next(), Some("y" | "Y"))
}

/// A one-line status shown on stderr while waiting, only when stderr is a terminal.
pub struct Progress {
    enabled: bool,
    started: Instant,
    frame: usize,
    shown: bool,
}

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

impl Progress {
    /// A progress line (inactive unless stderr is a terminal).
    pub fn new() -> Self {
        Self {
            enabled: stderr_tty(),
            started: Instant::now(),
            frame: 0,
            shown: false,
        }
    }

    /// Shows `text` with a spinner and the elapsed time.
    pub fn update(&mut self, text: &str) {
        if !self.enabled {
            return;
        }
        self.frame = (self.frame + 1) % FRAMES.len();
        let secs = self.started.elapsed().as_secs();
        eprint!("\r\x1b[2K{} {text} ({secs}s)", FRAMES[self.frame]);
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    /// Removes the line.
    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_blanks_and_group_on_quotes() {
        assert_eq!(split_words("  a\tb  c "), vec!["a", "b", "c"]);
        assert_eq!(
            split_words(r#"prefs set value "\"concise\"" key "a b""#),
            vec!["prefs", "set", "value", "\\concise\\", "key", "a b"]
        );
        assert_eq!(split_words(r#"x """#), vec!["x", ""]);
        assert!(split_words(" \t ").is_empty());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(
            interval_flag("100ms", "--interval").expect("ok"),
            Duration::from_secs(1)
        );
    }
}
