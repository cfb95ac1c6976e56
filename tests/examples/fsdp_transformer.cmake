paratorch_example(fsdp_transformer 2 "verify: fsdp-fp32 .* PASS.*verify: fsdp-bf16-compute .* PASS")
