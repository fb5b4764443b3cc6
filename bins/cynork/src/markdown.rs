//! A small terminal Markdown renderer for chat replies, fed as the reply streams in.
//!
//! Text is written as soon as it arrives; when a line is complete it is redrawn with
//! styling (headings, lists, quotes, rules, fenced code, inline code, emphasis, links)
//! if it still fits on one terminal row, otherwise it stays as typed. Without colour
//! the Markdown source is printed unchanged (the plain ASCII style).

use std::io::Write;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const ITALIC: &str = "\x1b[3m";
const UNDERLINE: &str = "\x1b[4m";
const CYAN: &str = "\x1b[36m";
const MAGENTA: &str = "\x1b[35m";

/// Streams a reply to a writer.
pub struct Renderer<W: Write> {
    out: W,
    styled: bool,
    width: usize,
    line: String,
    in_code: bool,
    wrote: bool,
    last_newline: bool,
}

impl<W: Write> Renderer<W> {
    /// `styled`: render Markdown with ANSI styles (only for a colour terminal);
    /// `width`: terminal columns.
    pub fn new(out: W, styled: bool, width: usize) -> Self {
        Self {
            out,
            styled,
            width: width.max(1),
            line: String::new(),
            in_code: false,
            wrote: false,
            last_newline: false,
        }
    }

    /// Appends streamed text.
    pub fn push(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.wrote = true;
        self.last_newline = text.ends_with('\n');
        if !self.styled {
            let _ = self.out.write_all(text.as_bytes());
            let _ = self.out.flush();
            return;
        }
        let mut rest = text;
        while let Some(i) = rest.find('\n') {
            let (part, tail) = rest.split_at(i);
            let _ = self.out.write_all(part.as_bytes());
            self.line.push_str(part);
            self.end_line();
            rest = &tail[1..];
        }
        let _ = self.out.write_all(rest.as_bytes());
        self.line.push_str(rest);
        let _ = self.out.flush();
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let fits = line.chars().count() < self.width;
        if fits {
            let rendered = render_line(&line, &mut self.in_code);
            let _ = write!(self.out, "\r\x1b[2K{rendered}\n");
        } else {
            // Wrapped on screen: cannot redraw in place; keep the raw text.
            let _ = render_line(&line, &mut self.in_code);
            let _ = self.out.write_all(b"\n");
        }
    }

    /// Finishes the reply: renders the last line and ends it with a newline (only when
    /// something was written).
    pub fn finish(&mut self) {
        if !self.wrote {
            return;
        }
        if self.styled {
            if !self.line.is_empty() {
                self.end_line();
            } else if !self.last_newline {
                let _ = self.out.write_all(b"\n");
            }
        } else if !self.last_newline {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.flush();
        self.wrote = false;
    }
}

/// One complete line, styled. `in_code` tracks fenced code blocks across lines.
pub fn render_line(line: &str, in_code: &mut bool) -> String {
    let trimmed = line.trim_start();
    if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
        *in_code = !*in_code;
        let lang = trimmed.trim_start_matches(['`', '~']).trim();
        return if *in_code && !lang.is_empty() {
            format!("{DIM}┌─ {lang}{RESET}")
        } else if *in_code {
            format!("{DIM}┌─{RESET}")
        } else {
            format!("{DIM}└─{RESET}")
        };
    }
    if *in_code {
        return format!("{DIM}│{RESET} {CYAN}{line}{RESET}");
    }
    let hashes = trimmed.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
        let text = inline(trimmed[hashes..].trim());
        return if hashes <= 2 {
            format!("{BOLD}{UNDERLINE}{text}{RESET}")
        } else {
            format!("{BOLD}{text}{RESET}")
        };
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() >= 3
        && (compact.chars().all(|c| c == '-')
            || compact.chars().all(|c| c == '*')
            || compact.chars().all(|c| c == '_'))
    {
        return format!("{DIM}{}{RESET}", "─".repeat(40));
    }
    if let Some(q) = trimmed.strip_prefix('>') {
        return format!("{DIM}│{RESET} {ITALIC}{}{RESET}", inline(q.trim_start()));
    }
    let indent = &line[..line.len() - trimmed.len()];
    for bullet in ["- ", "* ", "+ "] {
        if let Some(item) = trimmed.strip_prefix(bullet) {
            let (mark, item) = if let Some(i) = item.strip_prefix("[ ] ") {
                ("☐", i)
            } else if let Some(i) = item
                .strip_prefix("[x] ")
                .or_else(|| item.strip_prefix("[X] "))
            {
                ("☑", i)
            } else {
                ("•", item)
            };
            return format!("{indent}{MAGENTA}{mark}{RESET} {}", inline(item));
        }
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && trimmed[digits..].starts_with(". ") {
        return format!(
            "{indent}{MAGENTA}{}.{RESET} {}",
            &trimmed[..digits],
            inline(&trimmed[digits + 2..])
        );
    }
    inline(line)
}

/// Inline styles: `code`, **bold**, __bold__, *em*, _em_, [text](url).
pub fn inline(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let find = |from: usize, pat: &[char]| -> Option<usize> {
        (from..chars.len().saturating_sub(pat.len() - 1)).find(|&j| chars[j..j + pat.len()] == *pat)
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '`'
            && let Some(end) = find(i + 1, &['`'])
        {
            let code: String = chars[i + 1..end].iter().collect();
            out.push_str(&format!("{CYAN}{code}{RESET}"));
            i = end + 1;
            continue;
        }
        if (c == '*' || c == '_')
            && chars.get(i + 1) == Some(&c)
            && let Some(end) = find(i + 2, &[c, c]).filter(|&e| e > i + 2)
        {
            let inner: String = chars[i + 2..end].iter().collect();
            out.push_str(&format!("{BOLD}{}{RESET}", inline(&inner)));
            i = end + 2;
            continue;
        }
        if (c == '*' || c == '_')
            && chars.get(i + 1).is_some_and(|n| !n.is_whitespace())
            && (c == '*' || i == 0 || !chars[i - 1].is_alphanumeric())
            && let Some(end) = find(i + 1, &[c]).filter(|&e| e > i + 1)
        {
            let inner: String = chars[i + 1..end].iter().collect();
            out.push_str(&format!("{ITALIC}{}{RESET}", inline(&inner)));
            i = end + 1;
            continue;
        }
        if c == '['
            && let Some(close) = find(i + 1, &[']'])
            && chars.get(close + 1) == Some(&'(')
            && let Some(end) = find(close + 2, &[')'])
        {
            let text: String = chars[i + 1..close].iter().collect();
            let url: String = chars[close + 2..end].iter().collect();
            out.push_str(&format!(
                "{}{DIM} ({UNDERLINE}{url}{RESET}{DIM}){RESET}",
                inline(&text)
            ));
            i = end + 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> String {
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\x1b') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }

    #[test]
    fn block_elements() {
        let mut code = false;
        assert_eq!(strip(&render_line("## Title", &mut code)), "Title");
        assert!(render_line("## Title", &mut code).contains(BOLD));
        assert_eq!(strip(&render_line("- item `x`", &mut code)), "• item x");
        assert_eq!(strip(&render_line("  2. second", &mut code)), "  2. second");
        assert_eq!(strip(&render_line("> quoted", &mut code)), "│ quoted");
        assert_eq!(strip(&render_line("```rust", &mut code)), "┌─ rust");
        assert!(code);
        assert_eq!(
            strip(&render_line("# not a heading", &mut code)),
            "│ # not a heading"
        );
        assert_eq!(strip(&render_line("```", &mut code)), "└─");
        assert!(!code);
        assert_eq!(strip(&render_line("---", &mut code)), "─".repeat(40));
    }

    #[test]
    fn inline_elements() {
        assert_eq!(strip(&inline("a **b** *c* _d_ `e`")), "a b c d e");
        assert!(inline("**b**").contains(BOLD));
        assert!(inline("*c*").contains(ITALIC));
        assert_eq!(
            strip(&inline("see [docs](http://x)")),
            "see docs (http://x)"
        );
        assert_eq!(
            inline("snake_case_name and 2 * 3"),
            "snake_case_name and 2 * 3"
        );
        assert_eq!(inline("unclosed `code"), "unclosed `code");
    }

    #[test]
    fn streaming_redraws_complete_lines_only() {
        let mut buf = Vec::new();
        {
            let mut r = Renderer::new(&mut buf, true, 80);
            r.push("# He");
            r.push("llo\nplain **b");
            r.push("**");
            r.finish();
        }
        let text = String::from_utf8(buf).expect("utf8");
        assert!(text.starts_with("# Hello\r\x1b[2K"));
        assert_eq!(strip(&text).matches("Hello").count(), 2);
        assert!(text.ends_with(&format!("plain {BOLD}b{RESET}\n")));
        let mut raw = Vec::new();
        {
            let mut r = Renderer::new(&mut raw, false, 80);
            r.push("**x**");
            r.finish();
        }
        assert_eq!(raw, b"**x**\n");
    }
}
