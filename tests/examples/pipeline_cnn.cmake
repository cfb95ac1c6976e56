paratorch_example(pipeline_cnn 2 "verify: pipeline_cnn steps=[0-9]+ .* PASS")
