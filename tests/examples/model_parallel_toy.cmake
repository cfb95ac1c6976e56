paratorch_example(model_parallel_toy 2 "verify: model_parallel_toy steps=10 .* PASS")
