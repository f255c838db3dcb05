# Train the Transformer. Checkpoints live in results/{corpus}/{exp}/train/, which is deliberately
# not a declared output: Snakemake deletes the declared outputs of a failed or killed job, and the
# checkpoints must survive so that rerunning the same target continues training (pasero-train
# resumes from train/checkpoint_last.pt). The declared output is the `train/done` marker, touched
# when training has finished.
#
# The settings that determine the weights (corpus, tokenizer, dictionary, training options) are
# params, so changing them reruns this rule, and they are recorded in train/experiment.yaml: when
# they differ from those of the checkpoints there, training starts over (--reset) instead of
# resuming. Editing pasero's code changes neither, so finished models are kept.
#
# With more than one GPU (resources: gpus: N), torchrun starts one training process per GPU.


rule train:
    input:
        unpack(train_inputs),
    output:
        touch("results/{corpus}/{exp}/train/done"),
    params:
        dir=lambda w, output: os.path.dirname(output[0]),
        data=lambda w: f"{data_dir(exp(w))}/bin",
        tokenizer=lambda w: f"{data_dir(exp(w))}/tokenizer",
        langs=lambda w: f"--source-lang {exp(w)['src']} --target-lang {exp(w)['tgt']}",
        options=lambda w: options(exp(w)["train"], flags=False),
        run=run_settings,
    log:
        "results/{corpus}/{exp}/logs/train.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/train.tsv"
    threads: lambda w: exp(w)["resources"]["threads"]
    resources:
        gpu=lambda w: exp(w)["resources"]["gpus"],
    conda:
        "../workflow/envs/pasero.yaml"
    run:
        reset = "--reset" if stale_checkpoints(params.dir, params.run, log[0]) else ""
        run_on_gpus = launcher(resources.gpu)
        shell(
            "OMP_NUM_THREADS={threads} {run_on_gpus}pasero-train --data-dir {params.data} --dict {input.dict}"
            " --tokenizer {params.tokenizer} --model-dir {params.dir} {params.langs} {params.options}"
            " {reset} >> {log} 2>&1"
        )
