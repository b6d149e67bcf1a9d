"""Persistence: the files the package writes and reads, below everything that saves or loads.

- :mod:`.safe`: the weights-only model format (``model.safetensors`` + ``model.json``), written
  from any model of the package and checked field by field before anything is allocated on its
  word; :mod:`.values` (classes, schedules and VecNormalize statistics as plain data, tensor
  files), :mod:`.optimizer` (the optimizer's state), :mod:`.schema` (``model.json``'s and the ONNX
  metadata's schema), :mod:`.sizes` (sizes checked against the weights and the memory at hand),
  :mod:`.spaces` (Gymnasium spaces as JSON);
- :mod:`.run_folder`: run-folder files (names, atomic writes, ``run.json``, checkpoint folders,
  the run lock, what a kill leaves behind, writes refused by the disk as one line);
- :mod:`.trust`: the signed record in ``run.json`` of the modules a user's own command named.

As SB3's ``save_util`` sits below its algorithms, this package knows no algorithm. May import:
``nets`` (a policy built on the meta device checks a file's sizes) and the leaf modules. The
algorithms build themselves from what it reads (``RecurrentPPO.load_safe``); configs, runs,
export, sweeps and the command line write and read through it.
"""
