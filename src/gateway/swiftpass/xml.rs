//! The SwiftPass XML envelope (protocol §1): a flat `<xml><k>v</k>…</xml>` document.
//!
//! [`to_xml`] writes what the official demos and the real gateway write (alphabetical,
//! every value in CDATA, empty values left out). [`parse`] reads any well-formed flat
//! document (CDATA, escaped text or both, any order) and refuses everything else with a
//! distinct error: DTDs and entity declarations, nesting, repeated keys, non-UTF-8, oversized
//! bodies, a wrong root and content after the root.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::Params;

/// The largest body [`parse`] accepts (64 KiB). Real messages are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Why a body is not a SwiftPass XML message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Larger than [`MAX_BODY`].
    #[error("body of {0} bytes exceeds the {MAX_BODY} byte limit")]
    TooLarge(usize),
    /// Not valid UTF-8 (the protocol is UTF-8 only).
    #[error("body is not valid UTF-8")]
    NotUtf8,
    /// A `<!DOCTYPE …>` declaration (refused: it is the door to entity expansion attacks).
    #[error("DOCTYPE declarations are not allowed")]
    Doctype,
    /// A DOCTYPE that declares entities.
    #[error("entity declarations are not allowed")]
    EntityDeclaration,
    /// A reference to an entity other than the five predefined ones.
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    /// A processing instruction other than the leading `<?xml …?>` declaration.
    #[error("processing instructions are not allowed")]
    ProcessingInstruction,
    /// The root element is not `xml`.
    #[error("root element is <{0}>, expected <xml>")]
    WrongRoot(String),
    /// No root element at all (empty or whitespace-only body).
    #[error("no root element")]
    NoRoot,
    /// A field contains an element.
    #[error("element <{child}> nested inside <{field}>")]
    Nested {
        /// The field that contains the element.
        field: String,
        /// The nested element.
        child: String,
    },
    /// The same field appears twice.
    #[error("field <{0}> appears more than once")]
    DuplicateKey(String),
    /// Text directly inside `<xml>` (outside any field), or before the root.
    #[error("text outside of any field")]
    StrayText,
    /// Anything but whitespace and comments after `</xml>`.
    #[error("content after the root element")]
    TrailingContent,
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    Syntax(String),
}

/// Writes `params` as a SwiftPass XML document: root `<xml>`, one child per non-empty
/// value in key order, each value wrapped in CDATA. A value containing `]]>` is split over
/// two CDATA sections so it survives unchanged. Keys must be XML names (they are protocol
/// field names).
pub fn to_xml(params: &Params) -> String {
    let mut out = String::with_capacity(64 + params.len() * 48);
    out.push_str("<xml>");
    for (key, value) in params {
        if value.is_empty() {
            continue;
        }
        out.push('<');
        out.push_str(key);
        out.push_str("><![CDATA[");
        out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
        out.push_str("]]></");
        out.push_str(key);
        out.push('>');
    }
    out.push_str("</xml>");
    out
}

/// Where the parser is in the document.
enum State {
    /// Before the root element.
    Prolog,
    /// Inside `<xml>`, between fields.
    Root,
    /// Inside a field, collecting its value.
    Field { name: String, value: String },
    /// After `</xml>`.
    Epilog,
}

/// True when the text is XML whitespace only.
fn is_blank(text: &[u8]) -> bool {
    text.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Parses a SwiftPass XML body into params. Empty fields are treated as absent. Values are
/// returned raw: no trimming and no line-end normalisation, because signatures cover the
/// exact bytes the sender signed.
pub fn parse(body: &[u8]) -> Result<Params, XmlError> {
    if body.len() > MAX_BODY {
        return Err(XmlError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let mut reader = Reader::from_str(text);
    let mut params = Params::new();
    let mut seen = std::collections::BTreeSet::<String>::new();
    let mut state = State::Prolog;
    let mut first_event = true;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        let was_first = std::mem::replace(&mut first_event, false);
        match event {
            Event::Decl(_) => {
                if !was_first {
                    return Err(XmlError::Syntax(
                        "XML declaration not at the start".to_owned(),
                    ));
                }
            }
            Event::DocType(doctype) => {
                let declares_entities = doctype
                    .windows(b"<!ENTITY".len())
                    .any(|w| w.eq_ignore_ascii_case(b"<!ENTITY"));
                return Err(if declares_entities {
                    XmlError::EntityDeclaration
                } else {
                    XmlError::Doctype
                });
            }
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => {}
            Event::Start(element) => {
                let name = element_name(element.name().as_ref());
                state = match state {
                    State::Prolog if name == "xml" => State::Root,
                    State::Prolog => return Err(XmlError::WrongRoot(name)),
                    State::Root => State::Field {
                        name,
                        value: String::new(),
                    },
                    State::Field { name: field, .. } => {
                        return Err(XmlError::Nested { field, child: name });
                    }
                    State::Epilog => return Err(XmlError::TrailingContent),
                };
            }
            Event::Empty(element) => {
                let name = element_name(element.name().as_ref());
                state = match state {
                    State::Prolog if name == "xml" => State::Epilog,
                    State::Prolog => return Err(XmlError::WrongRoot(name)),
                    State::Root => {
                        if !seen.insert(name.clone()) {
                            return Err(XmlError::DuplicateKey(name));
                        }
                        State::Root
                    }
                    State::Field { name: field, .. } => {
                        return Err(XmlError::Nested { field, child: name });
                    }
                    State::Epilog => return Err(XmlError::TrailingContent),
                };
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches its start tag.
                state = match state {
                    State::Field { name, value } => {
                        if !seen.insert(name.clone()) {
                            return Err(XmlError::DuplicateKey(name));
                        }
                        if !value.is_empty() {
                            params.insert(name, value);
                        }
                        State::Root
                    }
                    State::Root => State::Epilog,
                    State::Prolog | State::Epilog => {
                        return Err(XmlError::Syntax("unexpected end tag".to_owned()));
                    }
                };
            }
            Event::Text(content) => match &mut state {
                State::Field { value, .. } => value.push_str(&decode(content.decode())?),
                State::Epilog if !is_blank(&content) => return Err(XmlError::TrailingContent),
                State::Prolog | State::Root if !is_blank(&content) => {
                    return Err(XmlError::StrayText);
                }
                _ => {}
            },
            Event::CData(content) => match &mut state {
                State::Field { value, .. } => value.push_str(&decode(content.decode())?),
                State::Epilog => return Err(XmlError::TrailingContent),
                _ => return Err(XmlError::StrayText),
            },
            Event::GeneralRef(reference) => match &mut state {
                State::Field { value, .. } => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        Ok(None) => {
                            let name = decode(reference.decode())?;
                            predefined_entity(&name)
                                .ok_or_else(|| XmlError::UnknownEntity(name.clone()))?
                        }
                        Err(e) => return Err(XmlError::Syntax(e.to_string())),
                    };
                    value.push(resolved);
                }
                State::Epilog => return Err(XmlError::TrailingContent),
                _ => return Err(XmlError::StrayText),
            },
            Event::Eof => {
                return match state {
                    State::Epilog => Ok(params),
                    State::Prolog => Err(XmlError::NoRoot),
                    State::Root | State::Field { .. } => {
                        Err(XmlError::Syntax("unexpected end of document".to_owned()))
                    }
                };
            }
        }
    }
}

/// An element name as a string (the input is UTF-8, so this never loses anything).
fn element_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Turns quick-xml's decoding result into ours.
fn decode<E: std::fmt::Display>(
    result: Result<std::borrow::Cow<'_, str>, E>,
) -> Result<String, XmlError> {
    result
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| XmlError::Syntax(e.to_string()))
}

/// The five entities every XML document may use without declaring them.
fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}
