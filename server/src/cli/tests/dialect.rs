//! vLLM's argument dialect, errors, `--model`/argv[0], environment, defaults, help, and the
//! clap subcommands.

use super::*;

#[test]
fn dialect_equals_underscores_last_wins_and_bools() {
    let (c, w) = serve("candela serve m --max_num_seqs=4 --port=9000 --served_model_name=x --enable_prefix_caching --no-enable-prefix-caching --generation-config vllm --seed 7 --max-model-len 32k --block_size 32 --kv-cache-memory-bytes 1G --max-num-batched-tokens 2k");
    assert_eq!(c.engine.max_num_seqs, 4);
    assert_eq!(c.http.port, 9000);
    assert_eq!(c.http.served_model_names, vec!["x"]);
    assert!(!c.engine.enable_prefix_caching);
    assert!(has(&w, "--enable-prefix-caching was given more than once"));
    assert_eq!(c.engine.generation_config, GenerationConfigMode::Vllm);
    assert_eq!(c.engine.seed, 7);
    assert_eq!(c.engine.max_model_len, Some(32000));
    assert_eq!(c.engine.block_size, 32);
    assert_eq!(c.engine.kv_cache_memory_bytes, 1 << 30);
    assert_eq!(c.engine.max_num_batched_tokens, Some(2000));
    // Values keep their underscores; `auto` / -1 derive the length; `None` clears a nullable flag.
    let (c, _) = serve("vllm serve my_org/my_model --tool-call-parser llama3_json --enable-auto-tool-choice --max-model-len -1 --quantization None --served-model-name a_b");
    assert_eq!(c.engine.model, "my_org/my_model");
    assert_eq!(c.http.tool_call_parser.as_deref(), Some("llama3_json"));
    assert_eq!(c.engine.max_model_len, None);
    assert_eq!(c.engine.quantization, None);
    assert_eq!(c.http.served_model_names, vec!["a_b"]);
    let (c, _) = serve("vllm serve m --max-model-len auto -tp 2 -q fp8");
    assert_eq!(
        (c.engine.max_model_len, c.engine.tensor_parallel_size),
        (None, 2)
    );
    assert_eq!(c.engine.quantization.as_deref(), Some("fp8"));
}

#[test]
fn dotted_json_merges_with_whole_value() {
    let mut a = argv("vllm serve m --kv-transfer-config");
    a.push(r#"{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both","kv_connector_extra_config":{"a":1}}"#.into());
    a.extend(argv("--kv-transfer-config.kv_role kv_producer --kv_transfer_config.kv_connector_extra_config.lmcache_rpc_port=sender --kv-transfer-config.kv_buffer_size 1k"));
    let (c, inv) = run(a, &Env::new());
    assert_eq!(
        c.engine.kv_transfer_config,
        Some(
            json!({"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer", "kv_buffer_size": 1000, "kv_connector_extra_config": {"a": 1, "lmcache_rpc_port": "sender"}})
        )
    );
    assert!(
        has(&inv.warnings, "--kv-transfer-config.kv_role overrides"),
        "{:?}",
        inv.warnings
    );
    // Dotted keys alone build the object.
    let (c, _) = serve("vllm serve m --kv-transfer-config.kv_connector LMCacheConnectorV1 --kv-transfer-config.kv_role kv_consumer");
    assert_eq!(
        c.engine.kv_transfer_config,
        Some(json!({"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_consumer"}))
    );
}

#[test]
fn model_flag_and_argv0() {
    for a0 in [
        "/usr/bin/vllm",
        "vllm",
        "/opt/venv/bin/vllm",
        "/usr/local/bin/candela",
        "target/debug/candela",
    ] {
        let (c, _) = run(
            vec![
                a0.into(),
                "serve".into(),
                "org/m".into(),
                "--port".into(),
                "8001".into(),
            ],
            &Env::new(),
        );
        assert_eq!((c.engine.model.as_str(), c.http.port), ("org/m", 8001));
    }
    let (c, w) = serve("vllm serve --port 8001 --model org/m");
    assert_eq!(c.engine.model, "org/m");
    assert!(has(&w, "positional"));
    let (c, _) = serve("vllm serve --model=org/m");
    assert_eq!(c.engine.model, "org/m");
    let e = err(argv("vllm serve org/a --model org/b"));
    assert!(
        e.message.contains("unrecognized arguments: org/a"),
        "{}",
        e.message
    );
    let e = err(argv("vllm serve --port 8000"));
    assert!(e.message.contains("required: model_tag"), "{}", e.message);
    let e = err(argv("/usr/bin/vllm serve m --foo"));
    assert!(e.message.starts_with("usage: vllm serve"), "{}", e.message);
}

#[test]
fn errors_name_the_flag() {
    let e = err(argv("vllm serve m --foo 1 --port 8000 --bar"));
    assert_eq!(e.code, 2);
    assert!(
        e.message
            .contains("vllm serve: error: unrecognized arguments: --foo 1 --bar"),
        "{}",
        e.message
    );
    let cases = [
        (
            "vllm serve m --dtype fp99",
            "argument --dtype: invalid choice: 'fp99'",
        ),
        (
            "vllm serve m --quantization nope",
            "argument --quantization/-q: invalid choice: 'nope'",
        ),
        (
            "vllm serve m --kv-cache-dtype int4",
            "argument --kv-cache-dtype: invalid choice: 'int4'",
        ),
        (
            "vllm serve m --distributed-executor-backend slurm",
            "argument --distributed-executor-backend: invalid choice: 'slurm'",
        ),
        (
            "vllm serve m --runner train",
            "argument --runner: invalid choice: 'train'",
        ),
        (
            "vllm serve m --convert x",
            "argument --convert: invalid choice: 'x'",
        ),
        (
            "vllm serve m --uvicorn-log-level loud",
            "argument --uvicorn-log-level: invalid choice: 'loud'",
        ),
        (
            "vllm serve m --port abc",
            "argument --port: invalid int value: 'abc'",
        ),
        ("vllm serve m --port 70000", "argument --port: invalid port"),
        (
            "vllm serve m --max-num-seqs 0",
            "argument --max-num-seqs: must be at least 1",
        ),
        (
            "vllm serve m --gpu-memory-utilization 1.5",
            "argument --gpu-memory-utilization: must be in (0, 1]",
        ),
        (
            "vllm serve m --max-model-len",
            "argument --max-model-len: expected one argument",
        ),
        (
            "vllm serve m --max-model-len --port 1",
            "argument --max-model-len: expected one argument",
        ),
        (
            "vllm serve m --served-model-name",
            "argument --served-model-name: expected at least one argument",
        ),
        (
            "vllm serve m --enforce-eager=true",
            "argument --enforce-eager/--no-enforce-eager: ignored explicit argument 'true'",
        ),
        (
            "vllm serve m --enforce-eager true",
            "unrecognized arguments: true",
        ),
        (
            "vllm serve m --no-port",
            "unrecognized arguments: --no-port",
        ),
        (
            "vllm serve m --kv-transfer-config nope",
            "argument --kv-transfer-config: invalid JSON value 'nope'",
        ),
        (
            "vllm serve m --kv-transfer-config.kv_role boss",
            "kv_role must be one of",
        ),
        (
            "vllm serve m --port.x 1",
            "argument --port: does not take dotted keys",
        ),
        (
            "vllm serve m --enable-auto-tool-choice",
            "--enable-auto-tool-choice requires --tool-call-parser",
        ),
    ];
    for (line, needle) in cases {
        let e = err(argv(line));
        assert_eq!(e.code, 2, "{line}");
        assert!(e.message.contains(needle), "{line}: {}", e.message);
    }
    let e = err(argv("candela generate --model m --prompt hi --bogus"));
    assert_eq!(e.code, 2);
    assert!(
        e.message.contains("unrecognized arguments: --bogus"),
        "{}",
        e.message
    );
}

#[test]
fn environment() {
    let e = env(&[
        ("VLLM_API_KEY", "secret"),
        ("HF_TOKEN", "hf_x"),
        ("HF_HOME", "/tmp"),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_ENDPOINT", "https://mirror.example/"),
        ("VLLM_CPU_KVCACHE_SPACE", "2"),
        ("VLLM_SOMETHING_NEW", "x"),
        ("LMCACHE_LOCAL_CPU", "False"),
    ]);
    let (c, _) = run(argv("vllm serve m"), &e);
    assert_eq!(c.http.api_keys, vec!["secret"]);
    assert_eq!(c.engine.hub.token.as_deref(), Some("hf_x"));
    assert!(c.engine.hub.offline);
    assert_eq!(
        c.engine.hub.endpoint.as_deref(),
        Some("https://mirror.example")
    );
    assert_eq!(c.engine.kv_cache_memory_bytes, 2 << 30);
    // Flags win over the environment.
    let (c, _) = run(
        argv("vllm serve m --api-key k --kv-cache-memory-bytes 1000"),
        &e,
    );
    assert_eq!(c.http.api_keys, vec!["k"]);
    assert_eq!(c.engine.kv_cache_memory_bytes, 1000);
    let (c, _) = run(argv("vllm serve m"), &Env::new());
    assert!(c.http.api_keys.is_empty() && c.engine.hub.token.is_none() && !c.engine.hub.offline);
    assert_eq!(c.engine.kv_cache_memory_bytes, 4 << 30);
    assert!(parse(
        &argv("vllm serve m"),
        &env(&[("VLLM_CPU_KVCACHE_SPACE", "lots")])
    )
    .is_err());
}

#[test]
fn defaults() {
    let (c, w) = serve("vllm serve m");
    assert_eq!(
        (
            c.http.host.as_str(),
            c.http.port,
            c.http.response_role.as_str()
        ),
        ("0.0.0.0", 8000, "assistant")
    );
    assert!(
        c.http.served_model_names.is_empty()
            && c.http.disable_log_requests
            && c.http.shutdown_timeout_secs > 0
    );
    assert!(c.engine.enable_prefix_caching && c.engine.enable_chunked_prefill);
    assert_eq!(
        (
            c.engine.tensor_parallel_size,
            c.engine.kv_cache_dtype.as_str()
        ),
        (1, "auto")
    );
    assert!(w.is_empty(), "{w:?}");
    let (c, _) = serve("vllm serve m --enable-log-requests --enable-request-id-headers --response-role bot --reasoning-parser qwen3");
    assert!(!c.http.disable_log_requests && c.http.enable_request_id_headers);
    assert_eq!(
        (
            c.http.response_role.as_str(),
            c.http.reasoning_parser.as_deref()
        ),
        ("bot", Some("qwen3"))
    );
}

#[test]
fn help_lists_every_flag() {
    for line in [
        "vllm serve --help",
        "vllm serve m -h",
        "candela serve --help=all",
        "vllm serve m --dtype bad --foo --help",
    ] {
        let inv = parse(&argv(line), &Env::new()).expect("help");
        let Command::Print(text) = inv.command else {
            panic!("{line}: no help")
        };
        for f in SERVE_FLAGS {
            assert!(
                text.contains(&format!("--{}", f.name)),
                "{line}: --{} missing",
                f.name
            );
        }
        assert!(text.contains("--no-enable-prefix-caching"));
    }
    let contract = "--host --port --served-model-name --max-model-len --dtype --gpu-memory-utilization --max-num-seqs --max-num-batched-tokens --enable-prefix-caching --enable-chunked-prefill --quantization --kv-cache-dtype --download-dir --tensor-parallel-size --pipeline-parallel-size --distributed-executor-backend --api-key --trust-remote-code --revision --chat-template --enable-auto-tool-choice --tool-call-parser --reasoning-parser --kv-transfer-config --enforce-eager --seed --block-size --swap-space --max-loras --enable-lora --runner --convert --disable-log-requests --enable-request-id-headers --uvicorn-log-level --generation-config --kv-cache-memory-bytes --response-role --max-lora-rank --tokenizer --load-format --disable-log-stats --max-log-len";
    let Command::Print(text) = parse(&argv("vllm serve --help"), &Env::new())
        .expect("help")
        .command
    else {
        panic!()
    };
    for flag in contract.split_whitespace() {
        assert!(text.contains(flag), "{flag} missing from help");
    }
    let Command::Print(text) = parse(&argv("vllm serve --help=lora"), &Env::new())
        .expect("help")
        .command
    else {
        panic!()
    };
    assert!(text.contains("--max-loras") && !text.contains("--port"));
    assert!(
        matches!(parse(&argv("vllm --help"), &Env::new()).map(|i| i.command), Ok(Command::Print(t)) if t.contains("serve"))
    );
}

#[test]
fn other_subcommands_accept_the_dialect() {
    let inv = parse(&argv("vllm generate --model m --prompt hi --max_tokens 3 --max-tokens 5 --no-enable-prefix-caching --stop a --stop b"), &Env::new()).expect("generate");
    let Command::Generate(g) = inv.command else {
        panic!("not generate")
    };
    assert_eq!(g.max_tokens, Some(5));
    assert!(g.engine.no_enable_prefix_caching);
    assert_eq!(g.stop, vec!["a", "b"]);
    assert!(
        has(&inv.warnings, "--max-tokens was given more than once"),
        "{:?}",
        inv.warnings
    );
    let inv = parse(
        &argv("candela bench latency --model m --input_len 8 --batch-size=2"),
        &Env::new(),
    )
    .expect("bench");
    assert!(matches!(inv.command, Command::Bench(_)));
    let inv = parse(
        &argv("candela make-random-model --out /tmp/x --tokenizer_from /tmp/t --layers 2"),
        &Env::new(),
    )
    .expect("make-random-model");
    assert!(matches!(inv.command, Command::MakeRandomModel(_)));
}

#[test]
fn engine_args_read_the_given_env_only() {
    let inv =
        parse(&argv("candela generate --model m --prompt hi"), &Env::new()).expect("generate");
    let Command::Generate(g) = inv.command else {
        panic!("not generate")
    };
    let cfg = g
        .engine
        .to_config_with_env(
            "m",
            &env(&[("VLLM_CPU_KVCACHE_SPACE", "1"), ("HF_TOKEN", "t")]),
        )
        .expect("config");
    assert_eq!(cfg.kv_cache_memory_bytes, 1 << 30);
    assert_eq!(cfg.hub.token.as_deref(), Some("t"));
}

#[test]
fn int4_activations_auto_follows_the_dtype() {
    use candela_models::Int4Activations::{Int8, F32};
    let acts = |line: &str| serve(line).0.engine.int4_activations;
    assert_eq!(acts("vllm serve m"), F32);
    assert_eq!(acts("vllm serve m --dtype float16"), F32);
    assert_eq!(acts("vllm serve m --dtype bfloat16"), Int8);
    assert_eq!(
        acts("vllm serve m --dtype=bfloat16 --int4-activations auto"),
        Int8
    );
    assert_eq!(
        acts("vllm serve m --dtype bfloat16 --int4-activations float32"),
        F32
    );
    assert_eq!(acts("vllm serve m --int4-activations int8"), Int8);
}
