//! The XML envelope: the exact output shape, tolerant reading, every refusal, and a
//! round-trip property over arbitrary strings.

use proptest::prelude::*;
use topup::gateway::swiftpass::Params;
use topup::gateway::swiftpass::xml::{MAX_BODY, XmlError, parse, to_xml};

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn writes_sorted_cdata_without_empty_values() {
    let p = params(&[("status", "0"), ("empty", ""), ("attach", "a<b&c")]);
    assert_eq!(
        to_xml(&p),
        "<xml><attach><![CDATA[a<b&c]]></attach><status><![CDATA[0]]></status></xml>"
    );
}

#[test]
fn cdata_terminator_inside_a_value_is_split() {
    let p = params(&[("body", "x]]>y")]);
    let xml = to_xml(&p);
    assert_eq!(xml, "<xml><body><![CDATA[x]]]]><![CDATA[>y]]></body></xml>");
    assert_eq!(parse(xml.as_bytes()).unwrap(), p);
}

#[test]
fn reads_cdata_escaped_and_mixed_text_in_any_order() {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <!-- a comment -->\n  \
        <z>plain</z>\n  <a><![CDATA[<c>]]></a>\n  <m>&lt;x&gt; &amp; &quot;&apos; &#20013;&#x6587;</m>\n  \
        <mix>pre<![CDATA[<mid>]]>&amp;post</mix>\n  <empty><![CDATA[]]></empty>\n  <void/>\n  \
        <spaced>  kept  </spaced>\n</xml>\n";
    let p = parse(body.as_bytes()).unwrap();
    assert_eq!(
        p,
        params(&[
            ("a", "<c>"),
            ("m", "<x> & \"' 中文"),
            ("mix", "pre<mid>&post"),
            ("spaced", "  kept  "),
            ("z", "plain"),
        ])
    );
}

#[test]
fn a_byte_order_mark_and_an_empty_root_are_fine() {
    assert_eq!(
        parse("\u{feff}<xml></xml>".as_bytes()).unwrap(),
        Params::new()
    );
    assert_eq!(parse(b"<xml/>").unwrap(), Params::new());
}

#[test]
fn refusals_are_distinct() {
    let cases: Vec<(&[u8], XmlError)> = vec![
        (b"<!DOCTYPE xml><xml><a>1</a></xml>", XmlError::Doctype),
        (
            b"<!DOCTYPE xml [<!ENTITY e \"boom\">]><xml><a>&e;</a></xml>",
            XmlError::EntityDeclaration,
        ),
        (
            b"<xml><a>&e;</a></xml>",
            XmlError::UnknownEntity("e".into()),
        ),
        (
            b"<xml><a><b>1</b></a></xml>",
            XmlError::Nested {
                field: "a".into(),
                child: "b".into(),
            },
        ),
        (
            b"<xml><a>1</a><a>2</a></xml>",
            XmlError::DuplicateKey("a".into()),
        ),
        (
            b"<xml><a></a><a>2</a></xml>",
            XmlError::DuplicateKey("a".into()),
        ),
        (b"<xml><a>\xff\xfe</a></xml>", XmlError::NotUtf8),
        (b"<root><a>1</a></root>", XmlError::WrongRoot("root".into())),
        (b"<xml><a>1</a></xml>junk", XmlError::TrailingContent),
        (b"<xml><a>1</a></xml><xml/>", XmlError::TrailingContent),
        (b"<xml>stray<a>1</a></xml>", XmlError::StrayText),
        (b"<?php echo 1; ?><xml/>", XmlError::ProcessingInstruction),
        (b"", XmlError::NoRoot),
        (b"  \n ", XmlError::NoRoot),
    ];
    for (body, expected) in cases {
        assert_eq!(
            parse(body),
            Err(expected.clone()),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        parse(b"<xml><a>1</b></xml>"),
        Err(XmlError::Syntax(_))
    ));
    assert!(matches!(parse(b"<xml><a>1</a>"), Err(XmlError::Syntax(_))));
}

#[test]
fn size_limit_is_64_kib() {
    let wrap = |fill: usize| {
        let mut body = b"<xml><a>".to_vec();
        body.resize(body.len() + fill, b'x');
        body.extend_from_slice(b"</a></xml>");
        body
    };
    let overhead = wrap(0).len();
    let at_limit = wrap(MAX_BODY - overhead);
    assert_eq!(at_limit.len(), MAX_BODY);
    assert!(parse(&at_limit).is_ok());
    let over = wrap(MAX_BODY - overhead + 1);
    assert_eq!(parse(&over), Err(XmlError::TooLarge(MAX_BODY + 1)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn to_xml_then_parse_round_trips(
        p in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,12}", any::<String>(), 0..8),
        tricky in "(]]>|<|&|>|\\]|\\]\\]|中文|🦀|\r\n|\r| )*",
    ) {
        let mut p = p;
        p.insert("tricky".into(), tricky);
        let expected: Params = p.iter().filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(parse(to_xml(&p).as_bytes()).unwrap(), expected);
    }
}
