paratorch_example(hybrid_3d 8 "verify: hybrid_3d .* PASS")
