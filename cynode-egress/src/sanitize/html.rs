//! A streaming, error-tolerant HTML tokenizer and tree builder that writes visible text
//! straight into a [`Sink`] (steps 2–4 of the pipeline) without building a DOM.
//!
//! It follows the parts of the HTML parsing algorithm that decide what a browser shows:
//! comments and bogus comments, raw-text and RCDATA elements (including the script
//! escape states), void elements, implied end tags (`<p>` closed by blocks, `<li>`,
//! cells and rows), scoped end tags that cannot close past "special" elements, foreign
//! content (`svg`, `math`) with self-closing tags and CDATA, and end-of-file inside any
//! construct. Where it simplifies (no adoption agency, no foster parenting), it errs on
//! the side of keeping an element open, which can hide more text but never shows text
//! a browser would hide. Every loop advances and every scan is bounded, so hostile input
//! costs linear time.

use std::ops::Range;

use memchr::{memchr, memchr2, memmem};

use super::css;
use super::entities;
use super::sink::{self, Sink};
use super::tags::{self, Tag};

/// How far up the stack an end tag may look for its element.
const MAX_SCAN: usize = 512;

/// Element-removal rules in compiled form.
#[derive(Debug, Clone)]
pub(crate) struct HtmlRules {
    pub(crate) strip: [bool; Tag::COUNT],
    pub(crate) strip_other: Vec<Box<[u8]>>,
    pub(crate) class_hints: Vec<String>,
    pub(crate) id_hints: Vec<String>,
    pub(crate) hidden_classes: Vec<String>,
    pub(crate) keep_hints: Vec<String>,
}

/// Element counts removed while parsing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) elements: u32,
    pub(crate) hidden: u32,
    pub(crate) boilerplate: u32,
    pub(crate) comments: u32,
}

/// The parse result: all visible text, plus where the candidate content blocks are.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) text: String,
    pub(crate) title: Option<String>,
    pub(crate) article: Option<Range<usize>>,
    pub(crate) main: Option<Range<usize>>,
    pub(crate) densest: Option<(u64, Range<usize>)>,
    pub(crate) counts: Counts,
}

const F_SKIP: u16 = 1;
const F_PRE: u16 = 1 << 1;
const F_ANCHOR: u16 = 1 << 2;
const F_PARA: u16 = 1 << 3;
const F_FOREIGN: u16 = 1 << 4;
const F_ARTICLE: u16 = 1 << 5;
const F_MAIN: u16 = 1 << 6;
const F_CONTAINER: u16 = 1 << 7;

#[derive(Debug, Clone)]
struct Entry {
    tag: Tag,
    /// Lower-case name in the arena, for `Tag::Other`.
    name: Range<usize>,
    flags: u16,
    /// Output length when the element opened.
    start: usize,
    /// Text credited to this container.
    score: u64,
    /// Index of the nearest container (itself included).
    container: usize,
}

#[derive(Default)]
struct Attrs {
    style: Option<Range<usize>>,
    class: Option<Range<usize>>,
    id: Option<Range<usize>>,
    role: Option<Range<usize>>,
    aria_hidden: Option<Range<usize>>,
    hidden: bool,
    open: bool,
    any_amp: bool,
}

struct Parser<'a, 'r> {
    src: &'a str,
    b: &'a [u8],
    rules: &'r HtmlRules,
    sink: Sink,
    stack: Vec<Entry>,
    names: Vec<u8>,
    skip: u32,
    pre: u32,
    anchor: u32,
    para: u32,
    foreign: u32,
    semantic: u32,
    open_p: u32,
    have_html: bool,
    have_body: bool,
    title: Option<String>,
    article: Option<Range<usize>>,
    main: Option<Range<usize>>,
    densest: Option<(u64, Range<usize>)>,
    counts: Counts,
    scratch: String,
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// Parses `src` and returns its visible text with the content-block candidates.
pub(crate) fn parse(src: &str, rules: &HtmlRules) -> Doc {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        rules,
        sink: Sink::with_capacity(src.len() / 3),
        stack: Vec::with_capacity(64),
        names: Vec::new(),
        skip: 0,
        pre: 0,
        anchor: 0,
        para: 0,
        foreign: 0,
        semantic: 0,
        open_p: 0,
        have_html: false,
        have_body: false,
        title: None,
        article: None,
        main: None,
        densest: None,
        counts: Counts::default(),
        scratch: String::new(),
    };
    // The document itself is the root container and is never popped.
    p.stack.push(Entry {
        tag: Tag::Other,
        name: 0..0,
        flags: F_CONTAINER,
        start: 0,
        score: 0,
        container: 0,
    });
    p.run();
    let root_score = p.stack[0].score;
    p.pop_to(1);
    let len = p.sink.out.len();
    // The root is a candidate too, so "densest" is never worse than the whole page.
    if p.densest.as_ref().is_none_or(|(s, _)| root_score > *s) {
        p.densest = Some((root_score, 0..len));
    }
    Doc {
        text: p.sink.out,
        title: p.title,
        article: p.article,
        main: p.main,
        densest: p.densest,
        counts: p.counts,
    }
}

/// Plain text goes through the same writer (normalisation, invisible characters).
pub(crate) fn plain(src: &str) -> Doc {
    let mut sink = Sink::with_capacity(src.len());
    sink.text(src, false, true);
    let len = sink.out.len();
    Doc {
        text: sink.out,
        title: None,
        article: None,
        main: None,
        densest: Some((0, 0..len)),
        counts: Counts::default(),
    }
}

impl<'a> Parser<'a, '_> {
    fn run(&mut self) {
        let n = self.b.len();
        let mut pos = 0;
        while pos < n {
            match memchr(b'<', &self.b[pos..]) {
                None => {
                    self.text(pos, n);
                    pos = n;
                }
                Some(off) => {
                    let lt = pos + off;
                    if lt > pos {
                        self.text(pos, lt);
                    }
                    pos = self.markup(lt);
                }
            }
        }
    }

    /// Visible text between tags.
    fn text(&mut self, a: usize, z: usize) {
        if self.skip > 0 {
            return;
        }
        let pre = self.pre > 0;
        let written = self.sink.text(&self.src[a..z], true, pre);
        if written > 0 && self.para == 0 && self.anchor == 0 {
            let c = self.stack.last().map_or(0, |e| e.container);
            self.stack[c].score += written as u64;
        }
    }

    /// Handles the construct at `b[lt] == b'<'`; returns the position after it.
    fn markup(&mut self, lt: usize) -> usize {
        let n = self.b.len();
        let next = self.b.get(lt + 1).copied();
        match next {
            Some(c) if c.is_ascii_alphabetic() => self.start_tag(lt),
            Some(b'/') => match self.b.get(lt + 2).copied() {
                Some(c) if c.is_ascii_alphabetic() => self.end_tag(lt),
                Some(b'>') => lt + 3,
                Some(_) => self.bogus_comment(lt + 2),
                None => {
                    self.text(lt, n);
                    n
                }
            },
            Some(b'!') => {
                if self.b[lt..].starts_with(b"<!--") {
                    self.comment(lt + 4)
                } else if self.foreign > 0 && self.b[lt..].starts_with(b"<![CDATA[") {
                    let from = lt + 9;
                    match memmem::find(&self.b[from..], b"]]>") {
                        Some(off) => {
                            self.text(from, from + off);
                            from + off + 3
                        }
                        None => {
                            self.text(from, n);
                            n
                        }
                    }
                } else {
                    self.bogus_comment(lt + 2)
                }
            }
            Some(b'?') => self.bogus_comment(lt + 1),
            _ => {
                // A lone '<' is text.
                self.text(lt, lt + 1);
                lt + 1
            }
        }
    }

    fn count_comment(&mut self) {
        if self.skip == 0 {
            self.counts.comments += 1;
        }
    }

    /// `<!--` ... `-->` (also `--!>`, the abrupt `<!-->` and `<!--->`, and EOF).
    fn comment(&mut self, from: usize) -> usize {
        self.count_comment();
        let b = self.b;
        if b.get(from) == Some(&b'>') {
            return from + 1;
        }
        if b.get(from) == Some(&b'-') && b.get(from + 1) == Some(&b'>') {
            return from + 2;
        }
        let mut i = from;
        while let Some(off) = memmem::find(&b[i..], b"--") {
            let at = i + off;
            match b.get(at + 2) {
                Some(b'>') => return at + 3,
                Some(b'!') if b.get(at + 3) == Some(&b'>') => return at + 4,
                _ => i = at + 1,
            }
        }
        b.len()
    }

    fn bogus_comment(&mut self, from: usize) -> usize {
        self.count_comment();
        match memchr(b'>', &self.b[from..]) {
            Some(off) => from + off + 1,
            None => self.b.len(),
        }
    }

    /// Reads a tag name starting at `i`; returns its end.
    fn name_end(&self, mut i: usize) -> usize {
        let b = self.b;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' | b'>') {
            i += 1;
        }
        i
    }

    /// Parses attributes from `i` up to and including `>`. Returns the position after
    /// `>` and the self-closing flag, or `None` at end of input (the tag is dropped).
    fn attributes(&self, mut i: usize, mut attrs: Option<&mut Attrs>) -> Option<(usize, bool)> {
        let b = self.b;
        let n = b.len();
        loop {
            while i < n && is_ws(b[i]) {
                i += 1;
            }
            if i >= n {
                return None;
            }
            match b[i] {
                b'>' => return Some((i + 1, false)),
                b'/' => {
                    i += 1;
                    if b.get(i) == Some(&b'>') {
                        return Some((i + 1, true));
                    }
                    continue;
                }
                _ => {}
            }
            // Attribute name (a leading '=' belongs to the name).
            let name_start = i;
            i += 1;
            while i < n
                && !matches!(
                    b[i],
                    b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' | b'>' | b'='
                )
            {
                i += 1;
            }
            let name = name_start..i;
            while i < n && is_ws(b[i]) {
                i += 1;
            }
            let mut value = None;
            if i < n && b[i] == b'=' {
                i += 1;
                while i < n && is_ws(b[i]) {
                    i += 1;
                }
                if i >= n {
                    return None;
                }
                match b[i] {
                    q @ (b'"' | b'\'') => {
                        let off = memchr(q, &b[i + 1..])?;
                        value = Some(i + 1..i + 1 + off);
                        i = i + 1 + off + 1;
                    }
                    b'>' => {}
                    _ => {
                        let s = i;
                        while i < n && !is_ws(b[i]) && b[i] != b'>' {
                            i += 1;
                        }
                        value = Some(s..i);
                    }
                }
            }
            if let Some(a) = attrs.as_deref_mut() {
                a.set(&b[name], value, b);
            }
        }
    }

    fn start_tag(&mut self, lt: usize) -> usize {
        let name_start = lt + 1;
        let name_end = self.name_end(name_start);
        let raw_name = &self.b[name_start..name_end];
        let mut lower = [0u8; 16];
        let tag = if raw_name.len() <= lower.len() {
            for (d, s) in lower.iter_mut().zip(raw_name) {
                *d = s.to_ascii_lowercase();
            }
            tags::lookup(&lower[..raw_name.len()])
        } else {
            Tag::Other
        };
        let evaluate = self.skip == 0;
        let mut attrs = Attrs::default();
        let Some((end, self_closing)) =
            self.attributes(name_end, if evaluate { Some(&mut attrs) } else { None })
        else {
            return self.b.len();
        };
        let tag = if tag == Tag::Image { Tag::Img } else { tag };
        self.open(tag, name_start..name_end, &attrs, self_closing);
        if (self.foreign == 0 || tag.is(tags::FOREIGN))
            && (tag.is(tags::RAW) || tag.is(tags::RCDATA))
        {
            return self.raw_text(tag, end);
        }
        end
    }

    fn end_tag(&mut self, lt: usize) -> usize {
        let name_start = lt + 2;
        let name_end = self.name_end(name_start);
        let Some((end, _)) = self.attributes(name_end, None) else {
            return self.b.len();
        };
        let raw_name = &self.b[name_start..name_end];
        let tag = if raw_name.len() <= 16 {
            let mut lower = [0u8; 16];
            for (d, s) in lower.iter_mut().zip(raw_name) {
                *d = s.to_ascii_lowercase();
            }
            tags::lookup(&lower[..raw_name.len()])
        } else {
            Tag::Other
        };
        self.close(tag, name_start..name_end);
        end
    }

    /// Content of a raw-text or RCDATA element up to its end tag.
    fn raw_text(&mut self, tag: Tag, from: usize) -> usize {
        let (content_end, after) = self.find_raw_end(tag, from);
        let visible = self.skip == 0;
        match tag {
            Tag::Title if self.title.is_none() && self.foreign == 0 => {
                let mut s = Sink::with_capacity(content_end - from);
                s.text(&self.src[from..content_end], true, false);
                if !s.out.is_empty() {
                    self.title = Some(s.out);
                }
            }
            Tag::Textarea if visible => {
                let written = self.sink.text(&self.src[from..content_end], true, true);
                self.credit_direct(written);
            }
            Tag::Xmp | Tag::Plaintext if visible => {
                let written = self.sink.text(&self.src[from..content_end], false, true);
                self.credit_direct(written);
            }
            _ => {}
        }
        // Close the element as its end tag would.
        self.close(tag, 0..0);
        after
    }

    fn credit_direct(&mut self, written: usize) {
        if written > 0 {
            let c = self.stack.last().map_or(0, |e| e.container);
            self.stack[c].score += written as u64;
        }
    }

    /// Finds `</name` followed by whitespace, `/` or `>`; returns (content end, position
    /// after the end tag). `<script>` follows the escape states, so `<!--<script>` can
    /// hide a `</script>` the way it does in a browser.
    fn find_raw_end(&self, tag: Tag, from: usize) -> (usize, usize) {
        let b = self.b;
        let n = b.len();
        if tag == Tag::Plaintext {
            return (n, n);
        }
        let name: &[u8] = match tag {
            Tag::Script => b"script",
            Tag::Style => b"style",
            Tag::Xmp => b"xmp",
            Tag::Iframe => b"iframe",
            Tag::Noembed => b"noembed",
            Tag::Noframes => b"noframes",
            Tag::Noscript => b"noscript",
            Tag::Title => b"title",
            Tag::Textarea => b"textarea",
            _ => return (n, n),
        };
        let matches_name = |at: usize, close: bool| -> bool {
            // at: index of '<'
            let s = at + 1 + usize::from(close);
            let e = s + name.len();
            e < n
                && b[s..e].eq_ignore_ascii_case(name)
                && matches!(b[e], b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' | b'>')
        };
        let finish = |at: usize| -> (usize, usize) {
            // Skip the end tag's own attributes up to '>'.
            let mut i = at + 2 + name.len();
            let mut quote = 0u8;
            while i < n {
                let c = b[i];
                if quote != 0 {
                    if c == quote {
                        quote = 0;
                    }
                } else if c == b'"' || c == b'\'' {
                    quote = c;
                } else if c == b'>' {
                    return (at, i + 1);
                }
                i += 1;
            }
            (at, n)
        };
        if tag != Tag::Script {
            let mut i = from;
            while let Some(off) = memmem::find(&b[i..], b"</") {
                let at = i + off;
                if matches_name(at, true) {
                    return finish(at);
                }
                i = at + 2;
            }
            return (n, n);
        }
        // Script data with escape and double-escape states.
        #[derive(PartialEq)]
        enum St {
            Data,
            Escaped,
            Double,
        }
        let mut st = St::Data;
        let mut i = from;
        while i < n {
            let Some(off) = memchr2(b'<', b'-', &b[i..]) else {
                break;
            };
            let at = i + off;
            if b[at] == b'-' {
                if st != St::Data && b[at..].starts_with(b"-->") {
                    st = St::Data;
                    i = at + 3;
                } else {
                    i = at + 1;
                }
                continue;
            }
            if st == St::Data && b[at..].starts_with(b"<!--") {
                st = St::Escaped;
                i = at + 4;
                continue;
            }
            if matches_name(at, true) {
                if st == St::Double {
                    st = St::Escaped;
                    i = at + 2;
                    continue;
                }
                return finish(at);
            }
            if st == St::Escaped && matches_name(at, false) {
                st = St::Double;
            }
            i = at + 1;
        }
        (n, n)
    }

    // ------------------------------------------------------------ tree building

    fn top(&self) -> &Entry {
        // The root entry is never popped.
        &self.stack[self.stack.len() - 1]
    }

    fn name_eq(&self, e: &Entry, tag: Tag, name: &[u8]) -> bool {
        e.tag == tag && (tag != Tag::Other || self.names[e.name.clone()].eq_ignore_ascii_case(name))
    }

    /// Index of the nearest open `tag` within scope, or `None`.
    fn in_scope(&self, tag: Tag, boundary: u32, extra: &[Tag]) -> Option<usize> {
        for (k, i) in (1..self.stack.len()).rev().enumerate() {
            if k >= MAX_SCAN {
                return None;
            }
            let e = &self.stack[i];
            if e.tag == tag {
                return Some(i);
            }
            if e.tag.flags() & boundary != 0 || extra.contains(&e.tag) {
                return None;
            }
        }
        None
    }

    fn close_p_if_open(&mut self) {
        if self.open_p > 0
            && let Some(i) = self.in_scope(Tag::P, tags::SCOPE, &[Tag::Button])
        {
            self.pop_to(i);
        }
    }

    fn open(&mut self, tag: Tag, name: Range<usize>, attrs: &Attrs, self_closing: bool) {
        match tag {
            Tag::Head => return,
            Tag::Html if self.have_html => return,
            Tag::Body if self.have_body => return,
            Tag::Html => self.have_html = true,
            Tag::Body => self.have_body = true,
            _ => {}
        }
        if tag.is(tags::CLOSES_P) {
            self.close_p_if_open();
        }
        match tag {
            Tag::Li => self.close_item(&[Tag::Li]),
            Tag::Dd | Tag::Dt => self.close_item(&[Tag::Dd, Tag::Dt]),
            Tag::Td | Tag::Th => {
                for t in [Tag::Td, Tag::Th] {
                    if let Some(i) = self.in_scope(t, tags::TABLE_SCOPE, &[]) {
                        self.pop_to(i);
                    }
                }
            }
            Tag::Tr => {
                if let Some(i) = self.in_scope(Tag::Tr, tags::TABLE_SCOPE, &[]) {
                    self.pop_to(i);
                }
            }
            Tag::Tbody | Tag::Thead | Tag::Tfoot => {
                for t in [Tag::Tbody, Tag::Thead, Tag::Tfoot] {
                    if let Some(i) = self.in_scope(t, tags::TABLE_SCOPE, &[]) {
                        self.pop_to(i);
                    }
                }
            }
            Tag::Option | Tag::Optgroup if self.top().tag == Tag::Option => {
                let i = self.stack.len() - 1;
                self.pop_to(i);
            }
            _ if tag.is(tags::HEADING) && self.top().tag.is(tags::HEADING) => {
                let i = self.stack.len() - 1;
                self.pop_to(i);
            }
            _ => {}
        }

        let name_bytes = &self.b[name];
        let mut flags = 0u16;
        if self.skip == 0 {
            flags |= self.decide(tag, name_bytes, attrs);
        }
        let void =
            tag.is(tags::VOID) || (self_closing && (self.foreign > 0 || tag.is(tags::FOREIGN)));
        if void {
            if self.skip == 0 && flags & F_SKIP == 0 {
                match tag {
                    Tag::Br => self.sink.brk(sink::LINE),
                    Tag::Hr => self.sink.brk(sink::BLANK),
                    _ => {}
                }
            }
            return;
        }

        let f = tag.flags();
        if f & tags::FOREIGN != 0 || self.foreign > 0 {
            flags |= F_FOREIGN;
        }
        if tag == Tag::Pre || tag == Tag::Listing || tag == Tag::Textarea {
            flags |= F_PRE;
        }
        if f & tags::ANCHOR != 0 {
            flags |= F_ANCHOR;
        }
        if f & tags::PARAISH != 0 {
            flags |= F_PARA;
        }
        if f & tags::CONTAINER != 0 {
            flags |= F_CONTAINER;
        }
        if tag == Tag::Article {
            flags |= F_ARTICLE;
        }
        if tag == Tag::Main {
            flags |= F_MAIN;
        }
        if flags & (F_ARTICLE | F_MAIN) == 0
            && let Some(role) = &attrs.role
        {
            let role = &self.b[role.clone()];
            if role.eq_ignore_ascii_case(b"main") {
                flags |= F_MAIN | F_CONTAINER;
            } else if role.eq_ignore_ascii_case(b"article") {
                flags |= F_ARTICLE | F_CONTAINER;
            }
        }

        if self.skip == 0 && flags & F_SKIP == 0 {
            if f & tags::PARA_BREAK != 0 {
                self.sink.brk(sink::BLANK);
            } else if f & tags::LINE_BREAK != 0 {
                self.sink.brk(sink::LINE);
            }
            if f & tags::CELL != 0 && self.top_row_has_cell() {
                self.sink.brk(sink::CELL);
            }
        }

        let name = if tag == Tag::Other {
            let s = self.names.len();
            self.names
                .extend(name_bytes.iter().map(u8::to_ascii_lowercase));
            s..self.names.len()
        } else {
            0..0
        };
        let idx = self.stack.len();
        let container = if flags & F_CONTAINER != 0 {
            idx
        } else {
            self.top().container
        };
        self.stack.push(Entry {
            tag,
            name,
            flags,
            start: self.sink.out.len(),
            score: 0,
            container,
        });
        self.count_open(flags, tag, 1);
    }

    /// Whether the row being built already has a cell (so the next one gets ` | `).
    fn top_row_has_cell(&mut self) -> bool {
        // After the implied end tags above, the previous cell of this row is closed and
        // the row's output has grown since it opened if it had any visible cell.
        for i in (1..self.stack.len()).rev().take(MAX_SCAN) {
            let e = &self.stack[i];
            if e.tag == Tag::Tr {
                return self.sink.out.len() > e.start;
            }
            if e.tag.is(tags::TABLE_SCOPE) {
                return false;
            }
        }
        false
    }

    fn count_open(&mut self, flags: u16, tag: Tag, _d: u32) {
        if flags & F_SKIP != 0 {
            self.skip += 1;
        }
        if flags & F_PRE != 0 {
            self.pre += 1;
        }
        if flags & F_ANCHOR != 0 {
            self.anchor += 1;
        }
        if flags & F_PARA != 0 {
            self.para += 1;
        }
        if flags & F_FOREIGN != 0 {
            self.foreign += 1;
        }
        if flags & (F_ARTICLE | F_MAIN) != 0 {
            self.semantic += 1;
        }
        if tag == Tag::P {
            self.open_p += 1;
        }
    }

    /// Closes an open `li` (or `dd`/`dt`) the way a new one does.
    fn close_item(&mut self, kinds: &[Tag]) {
        for (k, i) in (1..self.stack.len()).rev().enumerate() {
            if k >= MAX_SCAN {
                return;
            }
            let t = self.stack[i].tag;
            if kinds.contains(&t) {
                self.pop_to(i);
                return;
            }
            if t.is(tags::SPECIAL) && !matches!(t, Tag::Address | Tag::Div | Tag::P) {
                return;
            }
        }
    }

    /// Decides whether a new element is removed, and counts why.
    fn decide(&mut self, tag: Tag, name: &[u8], attrs: &Attrs) -> u16 {
        let rules = self.rules;
        let stripped = if tag == Tag::Other {
            !rules.strip_other.is_empty()
                && rules
                    .strip_other
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(name))
        } else {
            tag.is(tags::NEVER_RENDERED) || rules.strip[tag as usize]
        };
        if stripped {
            self.counts.elements += 1;
            return F_SKIP;
        }
        if self.is_hidden(tag, attrs) {
            self.counts.hidden += 1;
            return F_SKIP;
        }
        if self.is_boilerplate(tag, attrs) {
            self.counts.boilerplate += 1;
            return F_SKIP;
        }
        0
    }

    /// An attribute value, with character references decoded when it has any. Borrows
    /// from the source, not from the parser.
    fn attr(&self, r: &Option<Range<usize>>, decode: bool) -> Option<std::borrow::Cow<'a, str>> {
        let r = r.as_ref()?;
        let src: &'a str = self.src;
        let s = &src[r.clone()];
        Some(if decode && s.contains('&') {
            std::borrow::Cow::Owned(entities::decode_all(s))
        } else {
            std::borrow::Cow::Borrowed(s)
        })
    }

    fn is_hidden(&mut self, tag: Tag, attrs: &Attrs) -> bool {
        if attrs.hidden {
            return true;
        }
        if tag == Tag::Dialog && !attrs.open {
            return true;
        }
        if let Some(v) = self.attr(&attrs.aria_hidden, attrs.any_amp)
            && v.trim().eq_ignore_ascii_case("true")
        {
            return true;
        }
        if let Some(style) = self.attr(&attrs.style, attrs.any_amp)
            && css::hides(&style, &mut self.scratch)
        {
            return true;
        }
        if !self.rules.hidden_classes.is_empty()
            && let Some(class) = self.attr(&attrs.class, attrs.any_amp)
        {
            for token in class.split_ascii_whitespace() {
                if self
                    .rules
                    .hidden_classes
                    .iter()
                    .any(|h| token.eq_ignore_ascii_case(h))
                {
                    return true;
                }
            }
        }
        false
    }

    fn is_boilerplate(&self, tag: Tag, attrs: &Attrs) -> bool {
        if matches!(tag, Tag::Html | Tag::Body | Tag::Main | Tag::Article) {
            return false;
        }
        if tag.is(tags::BOILERPLATE) {
            return true;
        }
        if tag == Tag::Header && self.semantic == 0 {
            return true;
        }
        if let Some(role) = &attrs.role {
            let role = self.src[role.clone()].trim().to_ascii_lowercase();
            match role.as_str() {
                "main" | "article" => return false,
                "navigation" | "banner" | "contentinfo" | "complementary" | "search" => {
                    return true;
                }
                _ => {}
            }
        }
        let rules = self.rules;
        let mut hit = false;
        for (value, hints) in [
            (&attrs.class, &rules.class_hints),
            (&attrs.id, &rules.id_hints),
        ] {
            if hints.is_empty() {
                continue;
            }
            if let Some(v) = self.attr(value, attrs.any_amp) {
                match hint_match(&v, hints, &rules.keep_hints) {
                    Some(true) => hit = true,
                    Some(false) => return false,
                    None => {}
                }
            }
        }
        hit
    }

    /// Handles an end tag (or the implied end of a raw-text element).
    fn close(&mut self, tag: Tag, name: Range<usize>) {
        match tag {
            Tag::Html | Tag::Body | Tag::Head => {}
            Tag::Br => {
                if self.skip == 0 {
                    self.sink.brk(sink::LINE);
                }
            }
            Tag::P => match self.in_scope(Tag::P, tags::SCOPE, &[Tag::Button]) {
                Some(i) => self.pop_to(i),
                None => {
                    if self.skip == 0 {
                        self.sink.brk(sink::BLANK);
                    }
                }
            },
            Tag::Other => {
                let name = self.b[name].to_vec();
                self.close_any(Tag::Other, &name);
            }
            _ if tag.is(tags::HEADING) => {
                for (k, i) in (1..self.stack.len()).rev().enumerate() {
                    if k >= MAX_SCAN {
                        return;
                    }
                    let t = self.stack[i].tag;
                    if t.is(tags::HEADING) {
                        self.pop_to(i);
                        return;
                    }
                    if t.is(tags::SCOPE) {
                        return;
                    }
                }
            }
            _ if tag.is(tags::SPECIAL) || tag.is(tags::FOREIGN) => {
                let boundary = if tag.is(tags::TABLE_PART) {
                    tags::TABLE_SCOPE
                } else {
                    tags::SCOPE
                };
                let extra: &[Tag] = if tag == Tag::Li {
                    &[Tag::Ol, Tag::Ul]
                } else {
                    &[]
                };
                if let Some(i) = self.in_scope(tag, boundary, extra) {
                    self.pop_to(i);
                }
            }
            _ => self.close_any(tag, &[]),
        }
    }

    /// "Any other end tag": pop to the nearest element with this name, unless a special
    /// element comes first.
    fn close_any(&mut self, tag: Tag, name: &[u8]) {
        for (k, i) in (1..self.stack.len()).rev().enumerate() {
            if k >= MAX_SCAN {
                return;
            }
            let e = &self.stack[i];
            if self.name_eq(e, tag, name) {
                self.pop_to(i);
                return;
            }
            if e.tag.is(tags::SPECIAL) {
                return;
            }
        }
    }

    /// Pops entries down to (and including) index `idx`.
    fn pop_to(&mut self, idx: usize) {
        while self.stack.len() > idx.max(1) {
            let Some(e) = self.stack.pop() else { return };
            self.finish(e);
        }
    }

    fn finish(&mut self, e: Entry) {
        let f = e.flags;
        if f & F_SKIP != 0 {
            self.skip -= 1;
        }
        if f & F_PRE != 0 {
            self.pre -= 1;
        }
        if f & F_ANCHOR != 0 {
            self.anchor -= 1;
        }
        if f & F_PARA != 0 {
            self.para -= 1;
        }
        if f & F_FOREIGN != 0 {
            self.foreign -= 1;
        }
        if f & (F_ARTICLE | F_MAIN) != 0 {
            self.semantic -= 1;
        }
        if e.tag == Tag::P {
            self.open_p -= 1;
        }
        if e.tag == Tag::Other {
            self.names.truncate(e.name.start);
        }
        if self.skip > 0 || f & F_SKIP != 0 {
            return;
        }
        let tf = e.tag.flags();
        if tf & tags::PARA_BREAK != 0 {
            self.sink.brk(sink::BLANK);
        } else if tf & tags::LINE_BREAK != 0 {
            self.sink.brk(sink::LINE);
        }
        let end = self.sink.out.len();
        let len = end - e.start;
        if f & F_PARA != 0 && self.para == 0 && self.anchor == 0 && len > 0 {
            let c = self.top().container;
            self.stack[c].score += len as u64;
        }
        if f & F_CONTAINER != 0
            && e.score > 0
            && self.densest.as_ref().is_none_or(|(s, _)| e.score > *s)
        {
            self.densest = Some((e.score, e.start..end));
        }
        if f & F_ARTICLE != 0 && len > self.article.as_ref().map_or(0, |r| r.len()) {
            self.article = Some(e.start..end);
        }
        if f & F_MAIN != 0 && len > self.main.as_ref().map_or(0, |r| r.len()) {
            self.main = Some(e.start..end);
        }
    }
}

impl Attrs {
    fn set(&mut self, name: &[u8], value: Option<Range<usize>>, b: &[u8]) {
        if let Some(v) = &value
            && !self.any_amp
            && memchr(b'&', &b[v.clone()]).is_some()
        {
            self.any_amp = true;
        }
        let slot = match name.len() {
            2 if name.eq_ignore_ascii_case(b"id") => &mut self.id,
            4 if name.eq_ignore_ascii_case(b"role") => &mut self.role,
            4 if name.eq_ignore_ascii_case(b"open") => {
                self.open = true;
                return;
            }
            5 if name.eq_ignore_ascii_case(b"style") => &mut self.style,
            5 if name.eq_ignore_ascii_case(b"class") => &mut self.class,
            6 if name.eq_ignore_ascii_case(b"hidden") => {
                self.hidden = true;
                return;
            }
            11 if name.eq_ignore_ascii_case(b"aria-hidden") => &mut self.aria_hidden,
            _ => return,
        };
        // The first occurrence of an attribute wins, as in a browser.
        if slot.is_none() {
            *slot = Some(value.unwrap_or(0..0));
        }
    }
}

/// Matches a class or id value against boilerplate hints.
///
/// The value is split into segments at anything that is not a letter or digit
/// (`site-header__nav` → `site`, `header`, `nav`). A hint matches a segment it equals,
/// or, for hints of three or more letters, a segment it starts or ends (`navbar`,
/// `topnav`, `cookiebanner`); two-letter hints such as `ad` match `ad` and `ads` only,
/// so `header`, `lead` or `shadow` are not mistaken for advertising. A segment equal to
/// a keep hint (`content`, `article`, `main`, ...) vetoes removal.
///
/// Returns `Some(false)` for a veto, `Some(true)` for a hit, `None` otherwise.
pub(crate) fn hint_match(value: &str, hints: &[String], keep: &[String]) -> Option<bool> {
    let mut hit = false;
    for seg in value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
    {
        if keep.iter().any(|k| seg.eq_ignore_ascii_case(k)) {
            return Some(false);
        }
        if !hit {
            hit = hints.iter().any(|h| segment_matches(seg, h));
        }
    }
    hit.then_some(true)
}

/// `hint` (lower case) against one segment, ASCII case-insensitively.
fn segment_matches(seg: &str, hint: &str) -> bool {
    let (s, h) = (seg.as_bytes(), hint.as_bytes());
    if s.eq_ignore_ascii_case(h) {
        return true;
    }
    if h.len() < 3 {
        return s.len() == h.len() + 1
            && s[..h.len()].eq_ignore_ascii_case(h)
            && s[h.len()].eq_ignore_ascii_case(&b's');
    }
    s.len() > h.len()
        && (s[..h.len()].eq_ignore_ascii_case(h) || s[s.len() - h.len()..].eq_ignore_ascii_case(h))
}
