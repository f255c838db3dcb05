# Train the Transformer. Checkpoints live in results/{corpus}/{exp}/train/, which is deliberately
# not a declared output: Snakemake deletes the declared outputs of a failed or killed job, and the
# checkpoints must survive so that rerunning the same target continues training (pasero-train
# resumes from train/checkpoint_last.pt). The declared output is the `train/done` marker, touched
# when training has finished.
#
# The settings that determine the weights (corpus, tokenizer, dictionary, training options) are
# params, so changing them reruns this rule; editing pasero's code changes none of them, so
# finished models are kept. Whether a rerun resumes or starts over is pasero-train's decision
# (--reset-if-changed): it starts over when the checkpoints in train/ were trained with other
# options, dictionary, tokenizer or data, and says what changed in the log; raising max_steps or
# patience continues training.
#
# With more than one GPU (resources: gpus: N), torchrun starts one training process per GPU.
#
# `exec`: the job's process is pasero-train itself, not a shell around it, so that when Snakemake is
# stopped it waits for pasero-train to finish saving its checkpoint instead of releasing the folder
# (and its lock) while the save is still going on; pasero-train also refuses to share its folder.
#
# The output goes to logs/train.log and, through `tee`, to Snakemake's console (a line every
# log_interval updates: step/max_steps, updates/s, ETA); tee ignores the INT/TERM that stop the job,
# so it keeps the lines pasero-train writes while it saves. Snakemake empties a job's log before each
# run, so logs/train.log holds the last run's output; pasero-train appends every run (first start,
# resumptions, restarts) to train/train.log.


rule train:
    input:
        unpack(get_train_inputs),
    output:
        touch("results/{corpus}/{exp}/train/done"),
    log:
        "results/{corpus}/{exp}/logs/train.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/train.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    threads: get_threads
    resources:
        gpu=get_gpus,
    params:
        dir=lambda w, output: os.path.dirname(output[0]),
        data=get_train_data,
        tokenizer=get_train_tokenizer,
        langs=get_train_languages,
        options=get_train_options,
        settings=get_run_settings,
        launcher=get_launcher,
    shell:
        "OMP_NUM_THREADS={threads} exec {params.launcher}pasero-train --data-dir {params.data} --dict {input.dict}"
        " --tokenizer {params.tokenizer} --model-dir {params.dir} {params.langs} {params.options}"
        " --reset-if-changed > >(trap '' INT TERM; exec tee {log}) 2>&1"
