paratorch_example(ddp_basic 2 "ddp_basic: 2 ranks, replicas differ by at most 0.0e\\+00 — in sync.*verify: ddp steps=50 .* PASS")
add_test(NAME example.ddp_basic.bf16
         COMMAND bash ${EXPECT} --rc 0 --match "verify: ddp bf16_compress steps=50 .* PASS"
                 -- bash ${CONSUMER} ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR} example ddp_basic 2 --bf16)
set_tests_properties(example.ddp_basic.bf16 PROPERTIES ENVIRONMENT "${PARATORCH_MPI_ENV}" TIMEOUT 300
                     FIXTURES_REQUIRED paratorch_installed PROCESSORS 2)
