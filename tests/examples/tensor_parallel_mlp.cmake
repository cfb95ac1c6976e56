paratorch_example(tensor_parallel_mlp 2 "verify: tensor_parallel_mlp megatron_mlp .* PASS.*verify: tensor_parallel_mlp transformer_block .* PASS")
