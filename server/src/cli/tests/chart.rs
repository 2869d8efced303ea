//! Every command line contract.md §1 (scenarios a, b, d) and §2 (Ray head) renders, parsed into
//! `HttpOptions` + `EngineConfig`.

use super::*;

#[test]
fn scenario_a_gpt_oss() {
    let (c, w) = serve("vllm serve openai/gpt-oss-20b --host 0.0.0.0 --port 8000 --no-enable-prefix-caching --max-model-len 32768 --gpu_memory_utilization 0.9 --served-model-name gpt-oss-20b");
    assert_eq!(c.engine.model, "openai/gpt-oss-20b");
    assert_eq!((c.http.host.as_str(), c.http.port), ("0.0.0.0", 8000));
    assert!(!c.engine.enable_prefix_caching);
    assert!(c.engine.enable_chunked_prefill);
    assert_eq!(c.engine.max_model_len, Some(32768));
    assert_eq!(c.engine.gpu_memory_utilization, 0.9);
    assert_eq!(c.http.served_model_names, vec!["gpt-oss-20b"]);
    assert_eq!(c.http.response_role, "assistant");
    assert!(c.http.api_keys.is_empty());
    assert!(
        has(
            &w,
            "--gpu-memory-utilization 0.9 is accepted and ignored on this backend"
        ),
        "{w:?}"
    );
}

#[test]
fn scenario_b_qwen_awq_tp2() {
    let (c, w) = serve("vllm serve Qwen/Qwen2.5-32B-Instruct-AWQ --host 0.0.0.0 --port 8000 --enable-prefix-caching --max-model-len 8192 --dtype float16 --tensor-parallel-size 2 --max-num-seqs 32 --gpu_memory_utilization 0.92 --quantization awq --kv-cache-dtype fp8 --served-model-name qwen32b");
    assert!(c.engine.enable_prefix_caching);
    assert_eq!(c.engine.max_model_len, Some(8192));
    assert_eq!(c.engine.dtype, WeightDType::F16);
    assert_eq!(c.engine.tensor_parallel_size, 2);
    assert_eq!(c.engine.max_num_seqs, 32);
    assert_eq!(c.engine.gpu_memory_utilization, 0.92);
    assert_eq!(c.engine.quantization.as_deref(), Some("awq"));
    assert_eq!(c.engine.kv_cache_dtype, "fp8");
    assert_eq!(c.http.served_model_names, vec!["qwen32b"]);
    assert!(
        has(&w, "--tensor-parallel-size 2 is accepted") && has(&w, "single device"),
        "{w:?}"
    );
    assert!(has(&w, "--quantization awq"), "{w:?}");
    // The KV cache really is FP8 (models::kv_cache), so the flag is not noted as ignored.
    assert!(!has(&w, "--kv-cache-dtype"), "{w:?}");
    // The V100 variant: gptq + --enforce-eager.
    let (c, w) = serve(
        "vllm serve m --dtype float16 --tensor-parallel-size 2 --quantization gptq --enforce-eager",
    );
    assert_eq!(c.engine.quantization.as_deref(), Some("gptq"));
    assert!(c.engine.enforce_eager);
    assert!(
        has(
            &w,
            "--enforce-eager is accepted and ignored on this backend"
        ),
        "{w:?}"
    );
}

const PD_JSON: &str = r#"{"kv_connector":"LMCacheConnectorV1","kv_role":"ROLE","kv_connector_extra_config":{"discard_partial_chunks": false, "lmcache_rpc_port": "PORT"}}"#;

#[test]
fn scenario_d_pd_prefill_and_decode() {
    for (role, port) in [("kv_producer", "sender"), ("kv_consumer", "receiver")] {
        let mut a = argv("vllm serve meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 --port 8000 --enable-prefix-caching --max-model-len 32000 --kv-transfer-config");
        a.push(PD_JSON.replace("ROLE", role).replace("PORT", port));
        let e = env(&[
            ("LMCACHE_USE_EXPERIMENTAL", "True"),
            ("VLLM_RPC_TIMEOUT", "1000000"),
            ("LMCACHE_NIXL_ROLE", "sender"),
            ("PYTHONHASHSEED", "123"),
            ("VLLM_USE_V1", "0"),
            ("VLLM_PORT", "tcp://10.0.0.1:8000"),
        ]);
        let (c, _) = run(a, &e);
        assert!(c.engine.enable_prefix_caching);
        assert_eq!(c.engine.max_model_len, Some(32000));
        let kv = c.engine.kv_transfer_config.expect("kv transfer config");
        assert_eq!(
            kv,
            json!({"kv_connector": "LMCacheConnectorV1", "kv_role": role, "kv_connector_extra_config": {"discard_partial_chunks": false, "lmcache_rpc_port": port}})
        );
    }
}

#[test]
fn ray_head_command_and_full_chart_order() {
    let mut a = argv("vllm serve meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 --port 8000 --distributed-executor-backend ray --enable-lora --enable-chunked-prefill --enable-prefix-caching --max-model-len 4096 --dtype bfloat16 --tensor-parallel-size 1 --pipeline-parallel-size 2 --max-num-seqs 16 --gpu-memory-utilization 0.9 --max-loras 4 --revision main --kv-transfer-config");
    a.push(r#"{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}"#.into());
    a.extend(argv(
        "--chat-template tool_chat_template_llama3.1_json.jinja",
    ));
    let e = env(&[
        ("VLLM_HOST_IP", "10.1.2.3"),
        ("EXPECTED_NODES", "2"),
        ("RAY_ADDRESS", "127.0.0.1:6379"),
        ("HF_HOME", "/data"),
    ]);
    let (c, inv) = run(a, &e);
    assert_eq!(
        c.engine.distributed_executor_backend.as_deref(),
        Some("ray")
    );
    assert_eq!(
        (
            c.engine.tensor_parallel_size,
            c.engine.pipeline_parallel_size
        ),
        (1, 2)
    );
    assert!(c.engine.enable_lora && c.engine.enable_chunked_prefill);
    assert_eq!(c.engine.max_loras, 4);
    assert_eq!(c.engine.dtype, WeightDType::BF16);
    assert_eq!(c.engine.hub.revision.as_deref(), Some("main"));
    assert_eq!(
        c.engine.hub.hf_home.as_deref(),
        Some(std::path::Path::new("/data"))
    );
    assert_eq!(c.engine.host_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(
        c.engine
            .kv_transfer_config
            .as_ref()
            .and_then(|k| k["kv_role"].as_str()),
        Some("kv_both")
    );
    assert_eq!(
        c.http.chat_template.as_deref(),
        Some("tool_chat_template_llama3.1_json.jinja")
    );
    assert!(
        has(&inv.warnings, "--pipeline-parallel-size 2")
            && has(&inv.warnings, "--distributed-executor-backend ray")
    );
    assert!(has(&inv.warnings, "--enable-lora is accepted and ignored"));

    // Deployment mode with every chart flag, underscores, then extraArgs that repeat flags.
    let mut a = argv("vllm serve m --host 0.0.0.0 --port 8000 --enable-lora --enable-auto-tool-choice --tool-call-parser hermes --no-enable-chunked-prefill --no-enable-prefix-caching --max-model-len 4096 --dtype auto --tensor-parallel-size 1 --max-num-seqs 8 --gpu_memory_utilization 0.5 --max_loras 2 --runner generate --convert none");
    a.extend(argv("--served-model-name a b --max-model-len 8192 --api-key k1 k2 --trust-remote-code --pipeline-parallel-size 1 --download-dir /data/models --distributed-executor-backend mp --revision v1 --chat-template /templates/t.jinja"));
    let (c, inv) = run(a, &Env::new());
    assert!(!c.engine.enable_chunked_prefill && !c.engine.enable_prefix_caching);
    assert_eq!(c.engine.max_model_len, Some(8192));
    assert!(
        has(
            &inv.warnings,
            "--max-model-len was given more than once; the last value wins"
        ),
        "{:?}",
        inv.warnings
    );
    assert_eq!(c.engine.max_loras, 2);
    assert_eq!(c.engine.gpu_memory_utilization, 0.5);
    assert_eq!(
        (c.engine.runner.as_str(), c.engine.convert.as_str()),
        ("generate", "none")
    );
    assert_eq!(c.http.served_model_names, vec!["a", "b"]);
    assert_eq!(c.http.api_keys, vec!["k1", "k2"]);
    assert!(c.http.enable_auto_tool_choice);
    assert_eq!(c.http.tool_call_parser.as_deref(), Some("hermes"));
    assert!(c.engine.trust_remote_code);
    assert_eq!(
        c.engine.hub.download_dir.as_deref(),
        Some(std::path::Path::new("/data/models"))
    );
    assert!(
        inv.info[0].contains("--api-key <2 redacted>") && !inv.info[0].contains("k1"),
        "{:?}",
        inv.info
    );
}
