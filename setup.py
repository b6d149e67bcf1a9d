"""Only what pyproject.toml cannot say: put ``_recurrent_rl_gym_hook.pth`` at site-packages' root.

The .pth line imports ``_recurrent_rl_gym_hook`` at interpreter startup, which registers the
``pomdp/`` environments when gymnasium is imported (Gymnasium 1.x dropped its entry-point
plugins). setuptools installs package files only, so ``build_py`` writes the .pth itself:

- a regular wheel: into ``build_lib``, whose contents become the wheel's root;
- an editable install (PEP 660, ``pip install -e .``): setuptools builds from the checkout and
  puts only what lands in the ``install`` command's ``install_lib`` (the unpacked editable wheel)
  into site-packages, so the .pth goes there, with a copy of the hook module, which then does not
  depend on the editable finder being installed before the .pth runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.warnings import InformationOnly

HOOK = "_recurrent_rl_gym_hook"
PTH_LINE = f"import {HOOK}\n"

# With a package-dir mapping (envs/ installs as recurrent_rl.envs), setuptools makes every
# editable install through an import finder and ends it with a 10-line note that folders of the
# working directory named like the package may take precedence during imports; pip shows it as a
# warning. Here the one such folder, recurrent_rl/, is the package itself, so the note is dropped.
warnings.filterwarnings("ignore", message=r"Editable installation\.", category=InformationOnly)


class build_py_with_pth(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            target = Path(self.get_finalized_command("install").install_lib)
            self.copy_file(str(Path(__file__).with_name(f"{HOOK}.py")), str(target / f"{HOOK}.py"))
        else:
            target = Path(self.build_lib)
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{HOOK}.pth").write_text(PTH_LINE, encoding="utf-8")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode:
            outputs.append(str(Path(self.build_lib, f"{HOOK}.pth")))
        return outputs


setup(cmdclass={"build_py": build_py_with_pth})
