//! Known HTML element names and what the tree builder and text writer need to know
//! about each (void, raw text, special, scope boundary, block kind, ...).

/// Element has no content and no end tag.
pub(crate) const VOID: u32 = 1;
/// Content is raw text up to the matching end tag (`script`, `style`, ...).
pub(crate) const RAW: u32 = 1 << 1;
/// Content is text with character references up to the end tag (`title`, `textarea`).
pub(crate) const RCDATA: u32 = 1 << 2;
/// "Special" in the HTML parsing algorithm: an unmatched end tag cannot close past it.
pub(crate) const SPECIAL: u32 = 1 << 3;
/// Starts and ends a paragraph-sized block (blank line around it).
pub(crate) const PARA_BREAK: u32 = 1 << 4;
/// Starts and ends a line.
pub(crate) const LINE_BREAK: u32 = 1 << 5;
/// A table cell (cells of a row are joined with ` | `).
pub(crate) const CELL: u32 = 1 << 6;
/// Its start tag closes an open `<p>`.
pub(crate) const CLOSES_P: u32 = 1 << 7;
/// Boundary of the default element scope.
pub(crate) const SCOPE: u32 = 1 << 8;
/// A block that can hold the page's main text (densest-block candidate).
pub(crate) const CONTAINER: u32 = 1 << 9;
/// A paragraph of running text; its length credits the enclosing container.
pub(crate) const PARAISH: u32 = 1 << 10;
/// Never rendered whatever the rules say (`script`, `style`, `template`, ...).
pub(crate) const NEVER_RENDERED: u32 = 1 << 11;
/// Foreign content root (`svg`, `math`).
pub(crate) const FOREIGN: u32 = 1 << 12;
/// `h1`..`h6`.
pub(crate) const HEADING: u32 = 1 << 13;
/// Boilerplate by element name (`nav`, `aside`, `footer`).
pub(crate) const BOILERPLATE: u32 = 1 << 14;
/// Table-structure element (its end tag uses table scope).
pub(crate) const TABLE_PART: u32 = 1 << 15;
/// Boundary of table scope.
pub(crate) const TABLE_SCOPE: u32 = 1 << 16;
/// A hyperlink (its text does not count towards text density).
pub(crate) const ANCHOR: u32 = 1 << 17;

macro_rules! tags {
    ($( $variant:ident = $name:literal => $flags:expr ),* $(,)?) => {
        /// A known element, or `Other` for custom and unknown names.
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        #[repr(u8)]
        pub(crate) enum Tag { Other, $($variant),* }

        const FLAGS: &[u32] = &[0, $($flags),*];

        /// Looks up a lower-case element name.
        pub(crate) fn lookup(name: &[u8]) -> Tag {
            match name {
                $($name => Tag::$variant,)*
                _ => Tag::Other,
            }
        }
    };
}

const BLOCK: u32 = SPECIAL | CLOSES_P;

tags! {
    A = b"a" => ANCHOR,
    Address = b"address" => BLOCK | LINE_BREAK,
    Applet = b"applet" => SPECIAL | SCOPE,
    Area = b"area" => VOID | SPECIAL,
    Article = b"article" => BLOCK | PARA_BREAK | CONTAINER,
    Aside = b"aside" => BLOCK | PARA_BREAK | BOILERPLATE,
    Audio = b"audio" => 0,
    B = b"b" => 0,
    Base = b"base" => VOID | SPECIAL | NEVER_RENDERED,
    Basefont = b"basefont" => VOID | SPECIAL,
    Bgsound = b"bgsound" => VOID | SPECIAL,
    Blockquote = b"blockquote" => BLOCK | PARA_BREAK | PARAISH,
    Body = b"body" => SPECIAL | CONTAINER | LINE_BREAK,
    Br = b"br" => VOID | SPECIAL,
    Button = b"button" => SPECIAL,
    Canvas = b"canvas" => 0,
    Caption = b"caption" => SPECIAL | SCOPE | LINE_BREAK | TABLE_PART,
    Center = b"center" => BLOCK | LINE_BREAK | CONTAINER,
    Col = b"col" => VOID | SPECIAL,
    Colgroup = b"colgroup" => SPECIAL | TABLE_PART,
    Datalist = b"datalist" => 0,
    Dd = b"dd" => SPECIAL | LINE_BREAK,
    Details = b"details" => BLOCK | PARA_BREAK,
    Dialog = b"dialog" => BLOCK | PARA_BREAK,
    Dir = b"dir" => BLOCK | PARA_BREAK,
    Div = b"div" => BLOCK | LINE_BREAK | CONTAINER,
    Dl = b"dl" => BLOCK | PARA_BREAK,
    Dt = b"dt" => SPECIAL | LINE_BREAK,
    Embed = b"embed" => VOID | SPECIAL,
    Fieldset = b"fieldset" => BLOCK | PARA_BREAK,
    Figcaption = b"figcaption" => BLOCK | LINE_BREAK,
    Figure = b"figure" => BLOCK | PARA_BREAK,
    Footer = b"footer" => BLOCK | PARA_BREAK | BOILERPLATE,
    Form = b"form" => BLOCK | LINE_BREAK,
    Frame = b"frame" => VOID | SPECIAL,
    Frameset = b"frameset" => SPECIAL,
    H1 = b"h1" => BLOCK | PARA_BREAK | HEADING,
    H2 = b"h2" => BLOCK | PARA_BREAK | HEADING,
    H3 = b"h3" => BLOCK | PARA_BREAK | HEADING,
    H4 = b"h4" => BLOCK | PARA_BREAK | HEADING,
    H5 = b"h5" => BLOCK | PARA_BREAK | HEADING,
    H6 = b"h6" => BLOCK | PARA_BREAK | HEADING,
    Head = b"head" => SPECIAL,
    Header = b"header" => BLOCK | PARA_BREAK,
    Hgroup = b"hgroup" => BLOCK | PARA_BREAK,
    Hr = b"hr" => VOID | SPECIAL | CLOSES_P,
    Html = b"html" => SPECIAL | SCOPE | TABLE_SCOPE,
    I = b"i" => 0,
    Iframe = b"iframe" => SPECIAL | RAW,
    Image = b"image" => VOID,
    Img = b"img" => VOID | SPECIAL,
    Input = b"input" => VOID | SPECIAL,
    Keygen = b"keygen" => VOID | SPECIAL,
    Li = b"li" => SPECIAL | LINE_BREAK,
    Link = b"link" => VOID | SPECIAL | NEVER_RENDERED,
    Listing = b"listing" => BLOCK | PARA_BREAK,
    Main = b"main" => BLOCK | PARA_BREAK | CONTAINER,
    Marquee = b"marquee" => SPECIAL | SCOPE,
    Math = b"math" => FOREIGN,
    Menu = b"menu" => BLOCK | PARA_BREAK,
    Meta = b"meta" => VOID | SPECIAL | NEVER_RENDERED,
    Nav = b"nav" => BLOCK | PARA_BREAK | BOILERPLATE,
    Noembed = b"noembed" => SPECIAL | RAW | NEVER_RENDERED,
    Noframes = b"noframes" => SPECIAL | RAW | NEVER_RENDERED,
    Noscript = b"noscript" => SPECIAL | RAW,
    Object = b"object" => SPECIAL | SCOPE,
    Ol = b"ol" => BLOCK | PARA_BREAK,
    Optgroup = b"optgroup" => LINE_BREAK,
    Option = b"option" => LINE_BREAK,
    Output = b"output" => 0,
    P = b"p" => BLOCK | PARA_BREAK | PARAISH,
    Param = b"param" => VOID | SPECIAL,
    Plaintext = b"plaintext" => BLOCK | RAW,
    Pre = b"pre" => BLOCK | PARA_BREAK | PARAISH,
    Script = b"script" => SPECIAL | RAW | NEVER_RENDERED,
    Search = b"search" => BLOCK | PARA_BREAK,
    Section = b"section" => BLOCK | PARA_BREAK | CONTAINER,
    Select = b"select" => SPECIAL,
    Source = b"source" => VOID | SPECIAL,
    Span = b"span" => 0,
    Style = b"style" => SPECIAL | RAW | NEVER_RENDERED,
    Summary = b"summary" => BLOCK | LINE_BREAK,
    Svg = b"svg" => FOREIGN,
    Table = b"table" => BLOCK | PARA_BREAK | SCOPE | TABLE_SCOPE | TABLE_PART,
    Tbody = b"tbody" => SPECIAL | TABLE_PART,
    Td = b"td" => SPECIAL | SCOPE | CELL | CONTAINER | TABLE_PART,
    Template = b"template" => SPECIAL | SCOPE | TABLE_SCOPE | NEVER_RENDERED,
    Textarea = b"textarea" => SPECIAL | RCDATA,
    Tfoot = b"tfoot" => SPECIAL | TABLE_PART,
    Th = b"th" => SPECIAL | SCOPE | CELL | TABLE_PART,
    Thead = b"thead" => SPECIAL | TABLE_PART,
    Title = b"title" => SPECIAL | RCDATA,
    Tr = b"tr" => SPECIAL | LINE_BREAK | TABLE_PART,
    Track = b"track" => VOID | SPECIAL,
    Ul = b"ul" => BLOCK | PARA_BREAK,
    Video = b"video" => 0,
    Wbr = b"wbr" => VOID | SPECIAL,
    Xmp = b"xmp" => BLOCK | RAW | PARA_BREAK,
}

impl Tag {
    /// The flag set of this element.
    #[inline]
    pub(crate) fn flags(self) -> u32 {
        FLAGS[self as usize]
    }

    /// Whether the element has all of `f`.
    #[inline]
    pub(crate) fn is(self, f: u32) -> bool {
        self.flags() & f == f
    }

    /// Number of known tags plus one (`Other`), for per-tag tables.
    pub(crate) const COUNT: usize = Tag::Xmp as usize + 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_flags() {
        assert_eq!(lookup(b"div"), Tag::Div);
        assert_eq!(lookup(b"my-widget"), Tag::Other);
        assert!(Tag::Br.is(VOID));
        assert!(Tag::Script.is(RAW | NEVER_RENDERED));
        assert!(!Tag::Span.is(SPECIAL));
        assert_eq!(FLAGS.len(), Tag::COUNT);
    }
}
