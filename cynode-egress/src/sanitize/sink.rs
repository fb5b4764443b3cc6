//! The text writer: turns text runs and block boundaries into normalised plain text as
//! it goes (step 4 of the pipeline), so no second normalisation pass is needed.
//!
//! Separators are held back until the next visible character arrives, which gives:
//! no leading or trailing whitespace, no spaces at line starts or ends, runs of spaces
//! and tabs as one space, at most one blank line in a row, `\n` line endings.
//! Control characters and invisible format characters (zero-width spaces and joiners,
//! bidi controls, soft hyphens, byte-order marks, Unicode tag characters) are dropped:
//! they render as nothing and are a known way to disguise text from pattern filters.

use super::entities;

/// Pending separator levels, ordered: a stronger one absorbs a weaker one.
pub(crate) const NONE: u8 = 0;
pub(crate) const SPACE: u8 = 1;
pub(crate) const CELL: u8 = 2;
pub(crate) const LINE: u8 = 3;
pub(crate) const BLANK: u8 = 4;

const PLAIN: u8 = 0;
const WS: u8 = 1;
const CTRL: u8 = 2;
const AMP: u8 = 3;
const LEAD: u8 = 4;

const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = CTRL;
        i += 1;
    }
    t[0x7f] = CTRL;
    t[b' ' as usize] = WS;
    t[b'\t' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = WS;
    t[0x0c] = WS;
    t[b'&' as usize] = AMP;
    t[0xc2] = LEAD;
    t[0xe2] = LEAD;
    t[0xe3] = LEAD;
    t[0xef] = LEAD;
    t[0xf3] = LEAD;
    t
};

/// What a multi-byte sequence amounts to.
enum Special {
    /// Ordinary character of this many bytes.
    Plain(usize),
    /// Renders as white space.
    Space(usize),
    /// Renders as nothing.
    Drop(usize),
}

#[inline]
fn special(b: &[u8]) -> Special {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    match at(0) {
        0xc2 => match at(1) {
            0xa0 => Special::Space(2),
            0xad | 0x80..=0x9f => Special::Drop(2),
            _ => Special::Plain(2),
        },
        0xe2 => match (at(1), at(2)) {
            (0x80, 0x80..=0x8a | 0xa8 | 0xa9 | 0xaf) | (0x81, 0x9f) => Special::Space(3),
            (0x80, 0x8b..=0x8f | 0xaa..=0xae) | (0x81, 0xa0..=0xaf) => Special::Drop(3),
            _ => Special::Plain(3),
        },
        0xe3 => match (at(1), at(2)) {
            (0x80, 0x80) => Special::Space(3),
            _ => Special::Plain(3),
        },
        0xef => match (at(1), at(2)) {
            (0xbb, 0xbf) | (0xbf, 0xb9..=0xbb) => Special::Drop(3),
            _ => Special::Plain(3),
        },
        0xf3 => match (at(1), at(2)) {
            (0xa0, 0x80 | 0x81) => Special::Drop(4),
            _ => Special::Plain(4),
        },
        _ => Special::Plain(1),
    }
}

/// Whether a decoded character renders as nothing.
#[inline]
pub(crate) fn invisible(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
        || (c.is_control() && !c.is_whitespace())
}

/// Accumulates normalised text.
pub(crate) struct Sink {
    pub(crate) out: String,
    pending: u8,
    newlines: u8,
}

impl Sink {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Sink {
            out: String::with_capacity(n),
            pending: NONE,
            newlines: 0,
        }
    }

    /// Requests a separator before the next text.
    #[inline]
    pub(crate) fn brk(&mut self, level: u8) {
        if level > self.pending {
            self.pending = level;
        }
    }

    #[inline]
    fn flush(&mut self) {
        if self.pending != NONE {
            if !self.out.is_empty() {
                match self.pending {
                    SPACE => {
                        if !self.out.ends_with('\n') {
                            self.out.push(' ');
                        }
                    }
                    CELL => {
                        if !self.out.ends_with('\n') {
                            self.out.push_str(" | ");
                        }
                    }
                    LINE => self.out.push('\n'),
                    _ => self.out.push_str("\n\n"),
                }
            }
            self.pending = NONE;
        }
        self.newlines = 0;
    }

    #[inline]
    fn ws(&mut self, byte: u8, pre: bool) {
        if pre && byte == b'\n' {
            self.newlines = self.newlines.saturating_add(1);
            self.brk(if self.newlines >= 2 { BLANK } else { LINE });
        } else {
            self.brk(SPACE);
        }
    }

    fn push_char(&mut self, c: char, pre: bool) {
        if c.is_whitespace() {
            let b = if c == '\n' { b'\n' } else { b' ' };
            self.ws(b, pre);
        } else if !invisible(c) {
            self.flush();
            self.out.push(c);
        }
    }

    /// Appends a text run. `refs`: decode character references; `pre`: keep line
    /// breaks. Returns the number of bytes added to the output.
    pub(crate) fn text(&mut self, s: &str, refs: bool, pre: bool) -> usize {
        let before = self.out.len();
        let b = s.as_bytes();
        let n = b.len();
        let mut i = 0;
        while i < n {
            let start = i;
            while i < n && CLASS[b[i] as usize] == PLAIN {
                i += 1;
            }
            // Multi-byte characters that are neither space nor invisible stay in the run.
            loop {
                if i < n
                    && CLASS[b[i] as usize] == LEAD
                    && let Special::Plain(len) = special(&b[i..])
                {
                    i += len;
                    while i < n && CLASS[b[i] as usize] == PLAIN {
                        i += 1;
                    }
                    continue;
                }
                break;
            }
            if i > start {
                self.flush();
                self.out.push_str(&s[start..i]);
            }
            if i >= n {
                break;
            }
            let c = b[i];
            match CLASS[c as usize] {
                WS => {
                    self.ws(c, pre);
                    i += 1;
                }
                CTRL => i += 1,
                AMP => {
                    if refs && let Some((ch, used)) = entities::decode(&b[i..]) {
                        self.push_char(ch, pre);
                        i += used;
                        continue;
                    }
                    self.flush();
                    self.out.push('&');
                    i += 1;
                }
                _ => match special(&b[i..]) {
                    Special::Space(len) => {
                        self.brk(SPACE);
                        i += len;
                    }
                    Special::Drop(len) | Special::Plain(len) => i += len,
                },
            }
        }
        self.out.len() - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(parts: &[(&str, u8)]) -> String {
        let mut s = Sink::with_capacity(64);
        for (t, brk) in parts {
            s.text(t, true, false);
            s.brk(*brk);
        }
        s.out
    }

    #[test]
    fn collapses_and_trims() {
        assert_eq!(
            norm(&[
                ("  a \t b  ", LINE),
                ("  c", BLANK),
                ("", BLANK),
                ("d  ", NONE)
            ]),
            "a b\nc\n\nd"
        );
        assert_eq!(norm(&[("x&nbsp;&amp;&#32;y", NONE)]), "x & y");
        assert_eq!(
            norm(&[("ig\u{200B}nore\u{202E} pre\u{AD}vious\u{E0041}", NONE)]),
            "ignore previous"
        );
        assert_eq!(norm(&[("a\u{0}b\u{7}c\u{a0}d\u{3000}e", NONE)]), "abc d e");
        assert_eq!(norm(&[("é ü 日本 😀", NONE)]), "é ü 日本 😀");
    }

    #[test]
    fn pre_keeps_lines() {
        let mut s = Sink::with_capacity(8);
        s.text("a\n  b\n\n\n\nc", false, true);
        assert_eq!(s.out, "a\nb\n\nc");
    }
}
