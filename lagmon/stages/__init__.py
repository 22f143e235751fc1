"""The three stages of lagmon, each its own OS process, and the runtime around them.

    lagmon.stages.runtime      run_stage, stage_main, StopFlag, Fatal, setup_logging, parse_args,
                               printable (the loop, signals, heartbeats, backoff, logging)
    lagmon.stages.sampler      Sampler, make_step, main
    lagmon.stages.reporter     Reporter, make_step, main
    lagmon.stages.housekeeper  Housekeeper, make_step, main

Nothing is imported here, so importing one stage does not load the others (the sampler's
Kafka client in particular); import from the submodules.
"""
