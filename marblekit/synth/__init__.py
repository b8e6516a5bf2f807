"""A synthetic labelled music suite: MARBLE-shaped tasks rendered from generated MIDI with FluidSynth, so their
labels are known by construction and the data are free of licences. ``marblekit synth`` writes them;
:func:`marblekit.core.task_format.load_task` reads one back (the format is documented in that module)."""
