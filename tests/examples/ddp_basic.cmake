paratorch_example(ddp_basic 2 "ddp_basic: 2 ranks, replicas differ by at most 0.0e\\+00 — in sync")
