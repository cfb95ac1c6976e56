paratorch_example(async_mf 3 "verify: .* PASS")
