//! Inline `style` analysis: does a declaration list make an element's text invisible?
//!
//! Covers the ways pages (and attackers) hide text: `display:none`,
//! `visibility:hidden|collapse`, `content-visibility:hidden`, zero or near-zero
//! `opacity` and `font-size`, zero-size boxes that clip their overflow, `clip` /
//! `clip-path` hiding, off-screen positioning (large negative offsets, `text-indent`,
//! `translate`), `scale(0)`, transparent text and text coloured like its background.
//! CSS comments and escapes are resolved first so `display:/**/n\6f ne` is seen for
//! what it is. Stylesheets (`<style>` rules applied by class) are not evaluated.

/// Normalises a style attribute: ASCII-lowercase, comments removed, escapes decoded,
/// whitespace collapsed to single spaces.
fn normalise(style: &str, out: &mut String) {
    out.clear();
    let mut chars = style.chars().peekable();
    let mut space = false;
    while let Some(c) = chars.next() {
        let c = match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                continue;
            }
            '\\' => {
                let mut hex = String::new();
                while hex.len() < 6 {
                    match chars.peek() {
                        Some(h) if h.is_ascii_hexdigit() => {
                            hex.push(*h);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                if hex.is_empty() {
                    match chars.next() {
                        Some('\n') | None => continue,
                        Some(other) => other,
                    }
                } else {
                    if matches!(chars.peek(), Some(w) if w.is_ascii_whitespace()) {
                        chars.next();
                    }
                    u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\u{FFFD}')
                }
            }
            c => c,
        };
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c.to_ascii_lowercase());
    }
}

/// A CSS length or number: value and unit (`""` for unitless).
fn length(v: &str) -> Option<(f64, &str)> {
    let v = v.trim();
    let end = v
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '-' || *c == '+') && *i == 0)))
        .map_or(v.len(), |(i, _)| i);
    let n: f64 = v[..end].parse().ok()?;
    Some((n, v[end..].trim()))
}

/// The length in CSS pixels where that is meaningful (16px per em/rem).
fn px(v: &str) -> Option<f64> {
    let (n, unit) = length(v)?;
    Some(match unit {
        "" | "px" => n,
        "em" | "rem" | "ch" | "ex" => n * 16.0,
        "pt" => n * 4.0 / 3.0,
        "pc" => n * 16.0,
        "in" => n * 96.0,
        "cm" => n * 96.0 / 2.54,
        "mm" => n * 96.0 / 25.4,
        "vw" | "vh" | "vmin" | "vmax" | "%" => n * 10.0, // rough: 1% of a ~1000px box
        _ => return None,
    })
}

fn is_zero(v: &str) -> bool {
    matches!(length(v), Some((n, _)) if n == 0.0)
}

fn far_negative(v: &str) -> bool {
    v.split([' ', ','])
        .any(|part| matches!(px(part), Some(p) if p <= -500.0))
}

/// `#rrggbb` / `rgb()` / a few names → (r, g, b, alpha).
fn colour(v: &str) -> Option<(u8, u8, u8, f64)> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix('#') {
        let digits: Vec<u8> = hex
            .chars()
            .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
            .collect::<Option<_>>()?;
        return match digits.as_slice() {
            [r, g, b] => Some((r * 17, g * 17, b * 17, 1.0)),
            [r, g, b, a] => Some((r * 17, g * 17, b * 17, f64::from(*a) / 15.0)),
            [r1, r2, g1, g2, b1, b2] => Some((r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2, 1.0)),
            [r1, r2, g1, g2, b1, b2, a1, a2] => Some((
                r1 * 16 + r2,
                g1 * 16 + g2,
                b1 * 16 + b2,
                f64::from(a1 * 16 + a2) / 255.0,
            )),
            _ => None,
        };
    }
    if let Some(args) = v
        .strip_prefix("rgba(")
        .or_else(|| v.strip_prefix("rgb("))
        .and_then(|r| r.strip_suffix(')'))
    {
        let parts: Vec<&str> = args
            .split([',', ' ', '/'])
            .filter(|p| !p.is_empty())
            .collect();
        let chan = |p: &str| -> Option<u8> {
            let (n, unit) = length(p)?;
            let n = if unit == "%" { n * 2.55 } else { n };
            Some(n.clamp(0.0, 255.0).round() as u8)
        };
        let alpha = match parts.get(3) {
            Some(a) => {
                let (n, unit) = length(a)?;
                if unit == "%" { n / 100.0 } else { n }
            }
            None => 1.0,
        };
        return Some((
            chan(parts.first()?)?,
            chan(parts.get(1)?)?,
            chan(parts.get(2)?)?,
            alpha,
        ));
    }
    Some(match v {
        "white" => (255, 255, 255, 1.0),
        "black" => (0, 0, 0, 1.0),
        "red" => (255, 0, 0, 1.0),
        "green" => (0, 128, 0, 1.0),
        "blue" => (0, 0, 255, 1.0),
        "yellow" => (255, 255, 0, 1.0),
        "gray" | "grey" => (128, 128, 128, 1.0),
        "silver" => (192, 192, 192, 1.0),
        "transparent" => (0, 0, 0, 0.0),
        _ => return None,
    })
}

/// Whether an inline style hides the element's text. `scratch` is reused between calls.
pub(crate) fn hides(style: &str, scratch: &mut String) -> bool {
    normalise(style, scratch);
    let s = scratch.as_str();
    let mut positioned = false;
    let mut zero_box = false;
    let mut clips_overflow = false;
    let mut clip_rect = false;
    let mut fg: Option<(u8, u8, u8, f64)> = None;
    let mut bg: Option<(u8, u8, u8, f64)> = None;
    for decl in s.split(';') {
        let Some((prop, value)) = decl.split_once(':') else {
            continue;
        };
        let prop = prop.trim();
        let value = value.trim();
        let value = value.strip_suffix("!important").unwrap_or(value).trim();
        match prop {
            "display" if value == "none" => return true,
            "visibility" if value == "hidden" || value == "collapse" => return true,
            "content-visibility" if value == "hidden" => return true,
            "opacity" => {
                if let Some((n, unit)) = length(value) {
                    let n = if unit == "%" { n / 100.0 } else { n };
                    if n <= 0.05 {
                        return true;
                    }
                }
            }
            "font-size"
                if (is_zero(value) || matches!(px(value), Some(p) if p <= 1.0)) => {
                    return true;
                }
            "position" => positioned = value == "absolute" || value == "fixed",
            "left" | "top" | "right" | "bottom" | "margin-left" | "margin-top" | "text-indent"
            | "inset" | "margin"
                if far_negative(value) => {
                    return true;
                }
            "transform" | "translate" | "scale" => {
                if value.contains("scale(0)") || value == "0" || value.starts_with("0 ") {
                    return true;
                }
                let inner = value.split(['(', ')', ',', ' ']).filter(|p| {
                    !p.is_empty()
                        && !p.ends_with('%')
                        && !p.starts_with(|c: char| c.is_ascii_alphabetic())
                });
                if inner
                    .into_iter()
                    .any(|p| matches!(px(p), Some(v) if v <= -500.0))
                {
                    return true;
                }
            }
            "width" | "height" | "max-width" | "max-height"
                if (is_zero(value) || matches!(px(value), Some(p) if (0.0..=1.0).contains(&p))) => {
                    zero_box = true;
                }
            "overflow" | "overflow-x" | "overflow-y" => {
                clips_overflow |= value == "hidden" || value == "clip";
            }
            "clip" => clip_rect = value.starts_with("rect("),
            "clip-path"
                if (value.starts_with("inset(50%")
                    || value.starts_with("inset(100%")
                    || value.starts_with("circle(0"))
                => {
                    return true;
                }
            "color" => fg = colour(value),
            "background-color" => bg = colour(value),
            "background"
                // Only a plain colour background can be compared.
                if (!value.contains(' ') || value.starts_with("rgb")) => {
                    bg = colour(value);
                }
            _ => {}
        }
    }
    if zero_box && clips_overflow {
        return true;
    }
    if clip_rect && positioned {
        return true;
    }
    if let Some((r, g, b, a)) = fg {
        if a <= 0.05 {
            return true;
        }
        if let Some((br, bgg, bb, ba)) = bg
            && ba >= 0.95
            && r == br
            && g == bgg
            && b == bb
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::hides;

    fn h(s: &str) -> bool {
        hides(s, &mut String::new())
    }

    #[test]
    fn hidden_styles() {
        for s in [
            "display:none",
            "DISPLAY : NONE !important",
            "display:/*x*/none",
            "display:n\\6f ne",
            "visibility:hidden",
            "opacity:0",
            "opacity: 0.0",
            "font-size:0",
            "font-size:0px",
            "font-size:0.5px",
            "color:#ffffff;background:#ffffff;font-size:0",
            "color:#fff;background-color:white",
            "color:rgba(0,0,0,0)",
            "color:transparent",
            "position:absolute;left:-9999px",
            "text-indent:-10000px",
            "transform:translateX(-9999px)",
            "width:1px;height:1px;overflow:hidden;position:absolute",
            "position:absolute;clip:rect(0,0,0,0)",
            "clip-path: inset(50%)",
            "transform:scale(0)",
            "max-height:0;overflow:hidden",
        ] {
            assert!(h(s), "should hide: {s}");
        }
    }

    #[test]
    fn visible_styles() {
        for s in [
            "",
            "display:block",
            "color:#333;background:#fff",
            "font-size:0.9em",
            "font-size:12px",
            "opacity:0.8",
            "position:relative;left:-10px",
            "transform:translate(-50%,-50%)",
            "margin:0 auto",
            "width:0",
            "overflow:hidden",
            "background:url(x.png) #fff;color:#fff",
            "display:none-ish",
        ] {
            assert!(!h(s), "should not hide: {s}");
        }
    }
}
