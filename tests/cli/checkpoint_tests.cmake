# Sharded checkpoints (docs/checkpoints.md): every rank writes what it holds,
# and any layout loads what any layout wrote. Included by CMakeLists.txt
# (PT, EXPECT, SAME_STEPS, TINY_GPT_ARGS, TINY_MLP_ARGS defined there).
set(SHARD_ARGS --config ${PROJECT_SOURCE_DIR}/examples/configs/gpt_kjv.toml --set data.source=synthetic
    --set model.n_layers=4 --set model.d_model=32 --set model.seq_len=16 --set data.global_batch=8
    --set parallel.microbatches=2 --set optim.warmup_steps=0 --set train.log_every=1
    --set train.checkpoint_every=3 --set train.steps=6)
string(REPLACE ";" " " SHARD_ARGS "${SHARD_ARGS}")
set(SHARD_OUT ${CMAKE_CURRENT_BINARY_DIR}/runs/sharded)

# dp=2 x pp=2 x tp=2 with ZeRO-1 saves step 3 (8 ranks, 8 shard files); it
# resumes at dp=4 with ZeRO-3, in one process, and at pp=2 x tp=2 (each rank
# reading only its own tp shards), and each continues as the saving run did
# (steps 4..6, 1e-5 relative).
add_test(NAME cli.checkpoint.reshard_3d_zero1_to_zero3_and_one_process
         COMMAND bash ${EXPECT} --rc 0
                 --match "resumed from .* at step 3 [(]written by layout dp=2,pp=2,tp=2 on 8 ranks[)]"
                 --match "shards=8 "
                 --match "same_steps: steps 4..6 equal.*same_steps: steps 4..6 equal.*same_steps: steps 4..6 equal"
                 -- bash -c "rm -rf ${SHARD_OUT} ${SHARD_OUT}_z3 ${SHARD_OUT}_one ${SHARD_OUT}_pptp && ${PT} train ${SHARD_ARGS} --nproc 8 --set parallel.dp=2 --set parallel.pp=2 --set parallel.tp=2 --set parallel.zero=1 --set train.out_dir=${SHARD_OUT} >/dev/null && echo shards=$(ls ${SHARD_OUT}/checkpoints/step-000003 | grep -c '^shard-') && ${PT} train ${SHARD_ARGS} --nproc 4 --set parallel.zero=3 --set train.out_dir=${SHARD_OUT}_z3 --resume ${SHARD_OUT}/checkpoints/step-000003 && bash ${SAME_STEPS} ${SHARD_OUT}/metrics.jsonl ${SHARD_OUT}_z3/metrics.jsonl 4 6 && ${PT} train ${SHARD_ARGS} --set train.out_dir=${SHARD_OUT}_one --resume ${SHARD_OUT}/checkpoints/step-000003 && bash ${SAME_STEPS} ${SHARD_OUT}/metrics.jsonl ${SHARD_OUT}_one/metrics.jsonl 4 6 && ${PT} train ${SHARD_ARGS} --nproc 4 --set parallel.pp=2 --set parallel.tp=2 --set train.out_dir=${SHARD_OUT}_pptp --resume ${SHARD_OUT}/checkpoints/step-000003 && bash ${SAME_STEPS} ${SHARD_OUT}/metrics.jsonl ${SHARD_OUT}_pptp/metrics.jsonl 4 6")
set_tests_properties(cli.checkpoint.reshard_3d_zero1_to_zero3_and_one_process PROPERTIES TIMEOUT 300 PROCESSORS 4)

# Elastic: a ZeRO-2 job on 4 ranks resumes on 2.
set(ELASTIC_OUT ${CMAKE_CURRENT_BINARY_DIR}/runs/elastic)
add_test(NAME cli.checkpoint.elastic_4_ranks_to_2
         COMMAND bash ${EXPECT} --rc 0 --match "resumed from .* at step 2 [(]written by layout dp=4,pp=1,tp=1 on 4 ranks[)]"
                 --match "same_steps: steps 3..4 equal"
                 -- bash -c "rm -rf ${ELASTIC_OUT} ${ELASTIC_OUT}_2 && ${PT} train ${TINY_GPT_ARGS} --nproc 4 --set parallel.zero=2 --set train.out_dir=${ELASTIC_OUT} >/dev/null && ${PT} train ${TINY_GPT_ARGS} --nproc 2 --set parallel.zero=2 --set train.out_dir=${ELASTIC_OUT}_2 --resume ${ELASTIC_OUT}/checkpoints/step-000002 && bash ${SAME_STEPS} ${ELASTIC_OUT}/metrics.jsonl ${ELASTIC_OUT}_2/metrics.jsonl 3 4")
set_tests_properties(cli.checkpoint.elastic_4_ranks_to_2 PROPERTIES TIMEOUT 300 PROCESSORS 4)

# A rank killed mid-save leaves the previous checkpoint in charge.
add_test(NAME cli.checkpoint.rank_killed_mid_save
         COMMAND bash ${EXPECT} --rc 0 --match "after the crash: latest=step-000002"
                 --match "resumed from .* at step 2" --match "PASS: the previous checkpoint stayed in charge"
                 -- bash ${CMAKE_CURRENT_SOURCE_DIR}/checkpoint_crash.sh ${CMAKE_CURRENT_BINARY_DIR}/runs/crash ${PT} ${TINY_GPT})
set_tests_properties(cli.checkpoint.rank_killed_mid_save PROPERTIES TIMEOUT 300 PROCESSORS 2)

# Export: the tp=2 run's model as one file of whole tensors, every parameter
# of the model (the count `train` printed) under nanoGPT's names.
set(EXPORT_OUT ${CMAKE_CURRENT_BINARY_DIR}/runs/export)
add_test(NAME cli.checkpoint.export_tp2
         COMMAND bash ${EXPECT} --rc 0
                 --match "gpt with ([0-9]+) parameters.*checkpoint export: [0-9]+ tensors, \\1 parameters, step 4 [(]written by layout dp=1,pp=1,tp=2[)] -> "
                 -- bash -c "rm -rf ${EXPORT_OUT} && ${PT} train ${TINY_GPT_ARGS} --nproc 2 --set parallel.tp=2 --set train.out_dir=${EXPORT_OUT} >${EXPORT_OUT}.log && head -1 ${EXPORT_OUT}.log && ${PT} checkpoint export ${EXPORT_OUT} ${EXPORT_OUT}/model.safetensors")
set_tests_properties(cli.checkpoint.export_tp2 PROPERTIES TIMEOUT 300 PROCESSORS 2)
paratorch_bad_input(checkpoint_export_usage "give 'export DIR FILE'" checkpoint export)
paratorch_bad_input(checkpoint_export_no_folder "no checkpoint folder /nonexistent" checkpoint export /nonexistent x.safetensors)

# Refusals when resuming (a checkpoint of this run's saving layout, step 3):
# another model, another optimizer, a layout the model cannot take.
add_test(NAME cli.checkpoint.refusals
         COMMAND bash ${EXPECT} --rc 0
                 --match "written for another model [(][[]model[]] d_model = 32 there, 64 here[)]"
                 --match "holds the state of optimizer \"adamw\", and [[]optim[]] name = \"sgd\" here"
                 --match "n_heads = 4 is not divisible by tp = 3"
                 -- bash -c "rm -rf ${SHARD_OUT}_r && ${PT} train ${SHARD_ARGS} --set train.steps=3 --set train.out_dir=${SHARD_OUT}_r >/dev/null && ${PT} train ${SHARD_ARGS} --set model.d_model=64 --set train.out_dir=${SHARD_OUT}_r2 --resume ${SHARD_OUT}_r 2>&1 | tail -1 && ${PT} train ${SHARD_ARGS} --set optim.name=sgd --set train.out_dir=${SHARD_OUT}_r2 --resume ${SHARD_OUT}_r 2>&1 | tail -1 && ${PT} train ${SHARD_ARGS} --nproc 3 --set parallel.tp=3 --set train.out_dir=${SHARD_OUT}_r2 --resume ${SHARD_OUT}_r 2>&1 | tail -1")
set_tests_properties(cli.checkpoint.refusals PROPERTIES TIMEOUT 300)
