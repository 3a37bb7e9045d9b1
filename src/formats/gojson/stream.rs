//! The fast path of the Go-JSON conversion: one pass over minified protojson,
//! writing as it reads. It relies on Central's field order (proto declaration
//! order, which is also Go's struct order) and hands anything else — fields
//! out of order, escaped keys — back to the general converter.

use super::schema::{Field, Kind, Message};
use super::write_string;

pub struct Stream<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    /// Objects and arrays open now: past the most any input may nest the
    /// stream gives up (decode refuses deeper input before it gets here).
    depth: usize,
    pub out: String,
}

/// `None`: not Central-shaped; use the general converter.
type Step = Option<()>;

impl<'a> Stream<'a> {
    pub fn new(s: &'a str) -> Stream<'a> {
        Stream {
            b: s.as_bytes(),
            s,
            i: 0,
            depth: 0,
            out: String::with_capacity(s.len() + s.len() / 4),
        }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Step {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The raw text of a string token, quotes included.
    fn string_token(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i;
        let mut j = self.i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                b'"' => {
                    self.i = j + 1;
                    return Some(&self.s[start..=j]);
                }
                _ => j += 1,
            }
        }
        None
    }

    /// An object key: protojson keys carry no escapes.
    fn key(&mut self) -> Option<&'a str> {
        let t = self.string_token()?;
        let k = &t[1..t.len() - 1];
        (!k.contains('\\')).then_some(k)
    }

    /// Writes a string Go's way. Protojson and Go agree except on `<>&` and
    /// U+2028/9, which Go escapes, so most strings are copied as they are.
    fn string(&mut self) -> Step {
        let t = self.string_token()?;
        let needs_go_escaping = t.bytes().any(|c| matches!(c, b'<' | b'>' | b'&' | b'\\'))
            || t.contains(['\u{2028}', '\u{2029}']);
        if needs_go_escaping {
            let decoded: String = serde_json::from_str(t).ok()?;
            write_string(&mut self.out, &decoded);
        } else {
            self.out.push_str(t);
        }
        Some(())
    }

    /// Numbers, booleans and null are the same in both encodings.
    fn scalar(&mut self) -> Step {
        self.ws();
        let start = self.i;
        while self.i < self.b.len()
            && !matches!(
                self.b[self.i],
                b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
            )
        {
            self.i += 1;
        }
        (self.i > start).then(|| self.out.push_str(&self.s[start..self.i]))
    }

    /// One level deeper; `None` past the limit.
    fn enter(&mut self) -> Step {
        self.depth += 1;
        (self.depth <= crate::model::MAX_DEPTH).then_some(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn skip(&mut self) -> Step {
        let saved = std::mem::take(&mut self.out);
        let r = self.unknown();
        self.out = saved;
        r
    }

    pub fn message(&mut self, msg: &Message) -> Step {
        self.eat(b'{')?;
        self.enter()?;
        self.out.push('{');
        let mut first = true;
        let mut last = 0usize;
        // Oneof interface names already written (at most a couple per message).
        let mut written: [Option<&str>; 4] = [None; 4];
        // Writes `"X":null` for every unset oneof declared before `before`,
        // except `current` (the oneof of the field about to be written).
        let pending_nulls = |out: &mut String,
                             first: &mut bool,
                             written: &mut [Option<&str>; 4],
                             before: usize,
                             current: Option<&str>| {
            for (idx, f) in msg.fields.iter().enumerate().take(before) {
                if let Some((iface, _)) = f.oneof {
                    if current == Some(iface) || written.iter().flatten().any(|w| *w == iface) {
                        continue;
                    }
                    // Only the first member's position counts.
                    if msg.fields[..idx]
                        .iter()
                        .any(|g| g.oneof.is_some_and(|(i, _)| i == iface))
                    {
                        continue;
                    }
                    if let Some(slot) = written.iter_mut().find(|w| w.is_none()) {
                        *slot = Some(iface);
                    }
                    if !*first {
                        out.push(',');
                    }
                    *first = false;
                    write_string(out, iface);
                    out.push_str(":null");
                }
            }
        };
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                let key = self.key()?;
                self.eat(b':')?;
                match msg.field(key) {
                    Some((index, f)) => {
                        if index < last {
                            return None;
                        }
                        last = index;
                        let current = f.oneof.map(|(iface, _)| iface);
                        pending_nulls(&mut self.out, &mut first, &mut written, index, current);
                        if !first {
                            self.out.push(',');
                        }
                        first = false;
                        self.field(f, &mut written)?;
                    }
                    None => {
                        if !first {
                            self.out.push(',');
                        }
                        first = false;
                        write_string(&mut self.out, &super::convert::snake(key));
                        self.out.push(':');
                        self.unknown()?;
                    }
                }
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        pending_nulls(
            &mut self.out,
            &mut first,
            &mut written,
            msg.fields.len(),
            None,
        );
        self.out.push('}');
        self.leave();
        Some(())
    }

    fn field(&mut self, f: &Field, written: &mut [Option<&'static str>; 4]) -> Step {
        match f.oneof {
            Some((iface, wrapper)) => {
                if written.iter().flatten().any(|w| *w == iface) {
                    return None; // two members of one oneof: not protojson
                }
                if let Some(slot) = written.iter_mut().find(|w| w.is_none()) {
                    *slot = Some(iface);
                }
                write_string(&mut self.out, iface);
                self.out.push_str(":{");
                write_string(&mut self.out, wrapper);
                self.out.push(':');
                self.typed(&f.kind)?;
                self.out.push('}');
            }
            None => {
                write_string(&mut self.out, f.go);
                self.out.push(':');
                self.typed(&f.kind)?;
            }
        }
        Some(())
    }

    fn typed(&mut self, kind: &Kind) -> Step {
        if self.peek()? == b'[' {
            self.i += 1;
            self.enter()?;
            self.out.push('[');
            if self.peek()? == b']' {
                self.i += 1;
            } else {
                loop {
                    self.typed(kind)?;
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.out.push(',');
                        }
                        b']' => {
                            self.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            self.out.push(']');
            self.leave();
            return Some(());
        }
        match kind {
            Kind::Scalar => self.unknown_scalar(),
            Kind::Int64 => {
                if self.peek()? == b'"' {
                    let t = self.string_token()?;
                    let digits = &t[1..t.len() - 1];
                    if digits.parse::<i128>().is_err() {
                        return None;
                    }
                    self.out.push_str(digits);
                    Some(())
                } else {
                    self.scalar()
                }
            }
            Kind::Enum(values) => {
                if self.peek()? == b'"' {
                    let t = self.string_token()?;
                    let name = &t[1..t.len() - 1];
                    match values.iter().find(|(n, _)| *n == name) {
                        Some((_, num)) => self.out.push_str(itoa(*num).as_str()),
                        None => self.out.push_str(t),
                    }
                    Some(())
                } else {
                    self.scalar()
                }
            }
            Kind::Message(m) => self.message(m),
            Kind::Timestamp => {
                let t = self.string_token()?;
                let ts = chrono::DateTime::parse_from_rfc3339(&t[1..t.len() - 1]).ok()?;
                let (secs, nanos) = (ts.timestamp(), ts.timestamp_subsec_nanos());
                self.out.push('{');
                if secs != 0 {
                    self.out.push_str("\"seconds\":");
                    self.out.push_str(&secs.to_string());
                }
                if nanos != 0 {
                    if secs != 0 {
                        self.out.push(',');
                    }
                    self.out.push_str("\"nanos\":");
                    self.out.push_str(&nanos.to_string());
                }
                self.out.push('}');
                Some(())
            }
            Kind::Any => {
                self.eat(b'{')?;
                let mut type_url = None;
                if self.peek()? != b'}' {
                    loop {
                        let k = self.key()?;
                        self.eat(b':')?;
                        if k == "@type" {
                            type_url = Some(self.string_token()?);
                        } else {
                            self.skip()?;
                        }
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => break,
                            _ => return None,
                        }
                    }
                }
                self.i += 1;
                match type_url {
                    Some(t) => {
                        self.out.push_str("{\"type_url\":");
                        self.out.push_str(t);
                        self.out.push('}');
                    }
                    None => self.out.push_str("{}"),
                }
                Some(())
            }
            Kind::Map(value_kind) => {
                self.eat(b'{')?;
                let mut entries: Vec<(&str, String)> = Vec::new();
                if self.peek()? == b'}' {
                    self.i += 1;
                } else {
                    loop {
                        let k = self.key()?;
                        self.eat(b':')?;
                        let saved = std::mem::take(&mut self.out);
                        let r = self.typed(value_kind);
                        let value = std::mem::replace(&mut self.out, saved);
                        r?;
                        entries.push((k, value));
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                self.out.push('{');
                for (n, (k, v)) in entries.iter().enumerate() {
                    if n > 0 {
                        self.out.push(',');
                    }
                    write_string(&mut self.out, k);
                    self.out.push(':');
                    self.out.push_str(v);
                }
                self.out.push('}');
                Some(())
            }
        }
    }

    fn unknown_scalar(&mut self) -> Step {
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' => self.unknown(),
            _ => self.scalar(),
        }
    }

    /// A value the schema does not describe: snake_case keys in input order,
    /// plain values (as the general converter writes them).
    fn unknown(&mut self) -> Step {
        match self.peek()? {
            b'{' => {
                self.i += 1;
                self.enter()?;
                self.out.push('{');
                if self.peek()? == b'}' {
                    self.i += 1;
                } else {
                    let mut first = true;
                    loop {
                        let k = self.key()?;
                        self.eat(b':')?;
                        if !first {
                            self.out.push(',');
                        }
                        first = false;
                        write_string(&mut self.out, &super::convert::snake(k));
                        self.out.push(':');
                        self.unknown()?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.out.push('}');
                self.leave();
                Some(())
            }
            b'[' => self.typed(&Kind::Scalar),
            b'"' => self.string(),
            _ => self.scalar(),
        }
    }

    pub fn finished(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }
}

fn itoa(n: i32) -> String {
    n.to_string()
}
