//! Tests of `chat_template.rs`.
use super::*;
use crate::tokenizer::tests::{fixture, golden, ids, smollm2_gguf, FIXTURES};
use crate::tokenizer::Tokenizer;
use serde_json::json;

fn render(src: &str, extra: Json) -> Result<String, ChatTemplateError> {
    ChatTemplate::new(src, Some("<s>"), Some("</s>"))?.render(&[], false, extra)
}

fn template_of(tok: &Tokenizer) -> ChatTemplate {
    ChatTemplate::new(
        tok.chat_template().unwrap(),
        tok.bos_token(),
        tok.eos_token(),
    )
    .unwrap()
}

#[test]
fn fixture_templates_match_golden() {
    for name in FIXTURES {
        let tok = Tokenizer::from_dir(fixture(name)).unwrap();
        let tmpl = template_of(&tok);
        let g = golden(name);
        let chats = g["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "chat");
        for case in chats.chain([&g["chat_multi_turn"]]) {
            let messages = case["messages"].as_array().unwrap();
            let text = tmpl.render(messages, true, Json::Null).unwrap();
            assert_eq!(text, case["text"].as_str().unwrap(), "{name}");
            assert_eq!(
                tok.encode(&text, false).unwrap(),
                ids(&case["input_ids"]),
                "{name}"
            );
        }
    }
}

#[test]
fn smollm2_gguf_template_matches_golden() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = Tokenizer::from_gguf(path).unwrap();
    let tmpl = template_of(&tok);
    let g = golden("smollm2-135m-instruct");
    for case in g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "chat")
    {
        let text = tmpl
            .render(case["messages"].as_array().unwrap(), true, Json::Null)
            .unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
        assert_eq!(tok.encode(&text, false).unwrap(), ids(&case["input_ids"]));
    }
}

#[test]
fn raise_exception_carries_the_message() {
    let src = "{% if messages|length == 0 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}";
    match render(src, Json::Null) {
        Err(ChatTemplateError::Raised(m)) => assert_eq!(m, "Conversation roles must alternate"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        render("{{ nope(", Json::Null),
        Err(ChatTemplateError::Syntax(_))
    ));
    assert!(matches!(
        render("{{ 1 }}", json!(3)),
        Err(ChatTemplateError::BadExtra)
    ));
}

#[test]
fn python_methods_loop_controls_and_context() {
    let src =
        "{{ bos_token }}{{ '  Hi there '.strip().upper() }}|{{ 'a,b'.split(',')|join('+') }}|\
        {{ 'x y'.title() }}|{{ 'abc'.startswith('ab') }}|{{ ' q'.lstrip() }}{{ 'r '.rstrip() }}|\
        {% for k, v in d.items() %}{% if k == 'skip' %}{% continue %}{% endif %}{{ k }}={{ v }};\
        {% if loop.index == 3 %}{% break %}{% endif %}{% endfor %}|{{ enable_thinking }}";
    let extra = json!({"d": {"z": 1, "skip": 0, "a": 2, "b": 3},
                       "chat_template_kwargs": {"enable_thinking": false}});
    assert_eq!(
        render(src, extra).unwrap(),
        "<s>HI THERE|a+b|X Y|True|qr|z=1;a=2;|False"
    );
}

#[test]
fn trim_and_lstrip_blocks_like_hf() {
    let src = "A\n  {% if true %}\n  B\n  {% endif %}\nC{% generation %}D{%- endgeneration %}\n";
    assert_eq!(render(src, Json::Null).unwrap(), "A\n  B\nCD");
}

#[test]
fn tojson_is_python_json_dumps() {
    let extra = json!({"t": {"name": "f", "p": [1, 2.5, 1e-5, "x<y\"é"], "o": {}, "n": null}});
    assert_eq!(
        render("{{ t|tojson }}", extra.clone()).unwrap(),
        r#"{"name": "f", "p": [1, 2.5, 1e-05, "x<y\"é"], "o": {}, "n": null}"#
    );
    assert_eq!(
        render("{{ t.p|tojson(indent=2) }}", extra.clone()).unwrap(),
        "[\n  1,\n  2.5,\n  1e-05,\n  \"x<y\\\"é\"\n]"
    );
    assert_eq!(
        render(
            "{{ t.o|tojson(ensure_ascii=true) }}{{ 'é'|tojson(ensure_ascii=true) }}",
            extra
        )
        .unwrap(),
        r#"{}"\u00e9""#
    );
    assert_eq!(py_float_repr(1e16), "1e+16");
    assert_eq!(py_float_repr(-0.5), "-0.5");
    assert_eq!(py_float_repr(100.0), "100.0");
    assert_eq!(py_float_repr(0.0001), "0.0001");
}

#[test]
fn strftime_formats_dates() {
    // 2024-07-26 13:05:09 UTC was a Friday.
    let t = 1_721_999_109;
    assert_eq!(
        strftime("%d %b %Y %H:%M:%S %A %j %-m %y %%", t),
        "26 Jul 2024 13:05:09 Friday 208 7 24 %"
    );
    assert_eq!(strftime("%B %e %I%p", 0), "January  1 12AM");
    let now = render("{{ strftime_now('%Y') }}", Json::Null).unwrap();
    assert!(now.parse::<i32>().unwrap() >= 2024);
}
