//! Bounded capture of a container's output streams.

use bytes::Bytes;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of output, as produced while the job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The stream.
    pub stream: StreamKind,
    /// Position of the first byte of `data` in its stream. Followers that fall behind
    /// miss chunks; a gap in offsets shows how much.
    pub offset: u64,
    /// The bytes (not necessarily whole lines or whole UTF-8 characters).
    pub data: Bytes,
}

/// Output of one stream, bounded to the configured size.
///
/// `text` holds at most the configured number of bytes, cut on a UTF-8 character
/// boundary, invalid sequences replaced by U+FFFD. `truncated` is the explicit marker that
/// output was dropped (no marker text is inserted into `text`, so it never exceeds the
/// cap), and `total_bytes` is the true number of bytes the process wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapturedOutput {
    /// The kept output.
    pub text: String,
    /// True when `text` is not the whole output.
    pub truncated: bool,
    /// Bytes the process wrote to the stream, kept or not.
    pub total_bytes: u64,
}

/// Keeps the first `cap` bytes of a stream and counts the rest.
#[derive(Debug)]
pub(crate) struct BoundedBuffer {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl BoundedBuffer {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap.min(64 * 1024)),
            cap,
            total: 0,
        }
    }

    /// Bytes seen so far (the offset of the next chunk).
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.cap - self.buf.len();
        if room > 0 {
            self.buf.extend_from_slice(&data[..room.min(data.len())]);
        }
    }

    pub(crate) fn finish(self) -> CapturedOutput {
        let dropped = self.total > self.buf.len() as u64;
        let (text, shortened) = bounded_utf8(&self.buf, self.cap, dropped);
        CapturedOutput {
            text,
            truncated: dropped || shortened,
            total_bytes: self.total,
        }
    }
}

/// Converts `bytes` to a string of at most `cap` bytes. When `cut` is set the input was
/// cut at the end, so an incomplete character there is dropped rather than replaced.
/// Returns whether anything had to be left out to respect `cap`.
pub(crate) fn bounded_utf8(bytes: &[u8], cap: usize, cut: bool) -> (String, bool) {
    let mut out = String::with_capacity(bytes.len().min(cap));
    let mut chunks = bytes.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        out.push_str(chunk.valid());
        let dropped_tail = cut && chunks.peek().is_none();
        if !chunk.invalid().is_empty() && !dropped_tail {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    if out.len() <= cap {
        return (out, false);
    }
    let mut end = cap;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_cap_bytes_and_counts_the_rest() {
        let mut b = BoundedBuffer::new(5);
        b.push(b"abc");
        b.push(b"defgh");
        assert_eq!(b.total(), 8);
        let out = b.finish();
        assert_eq!(out.text, "abcde");
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 8);
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let mut b = BoundedBuffer::new(4);
        b.push(b"abcd");
        let out = b.finish();
        assert_eq!(out.text, "abcd");
        assert!(!out.truncated);
    }

    #[test]
    fn multibyte_cut_stays_valid_utf8() {
        // "é\n" is 3 bytes; a cap of 4 cuts the second "é" in half.
        let mut b = BoundedBuffer::new(4);
        b.push("é\né\n".as_bytes());
        let out = b.finish();
        assert_eq!(out.text, "é\n");
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 6);
    }

    #[test]
    fn invalid_bytes_are_replaced_without_exceeding_the_cap() {
        let mut b = BoundedBuffer::new(4);
        b.push(&[0xff, 0xff, 0xff, 0xff]);
        let out = b.finish();
        assert!(out.text.len() <= 4);
        assert_eq!(out.text, "\u{fffd}");
        assert!(
            out.truncated,
            "replacement expanded past the cap, so output was lost"
        );
        let (s, short) = bounded_utf8(b"a\xffb", 10, false);
        assert_eq!(s, "a\u{fffd}b");
        assert!(!short);
    }
}
