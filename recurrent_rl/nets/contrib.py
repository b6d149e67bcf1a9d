"""sb3-contrib's ``RecurrentPPO`` policy keywords, translated into this package's options.

sb3-contrib names its LSTM options ``lstm_hidden_size``, ``n_lstm_layers``, ``enable_critic_lstm``,
``shared_lstm`` and ``lstm_kwargs``. :func:`translate_contrib_options` turns them into
``memory="lstm"``, ``hidden_size``, ``num_layers``, ``critic_memory`` (with the critic detached
from a shared memory, as sb3-contrib's ``shared_lstm`` does) and ``dropout``, so a script written
for sb3-contrib builds the same architecture here, with sb3-contrib's initialisation: PyTorch's
LSTM init (``gate_bias=0``) unless ``gate_bias`` is given. At sb3-contrib's learning-test settings
(benchmarks/contrib_settings.py) the LSTM passed on 6 of 6 seeds with it and on fewer with this
package's forget-gate bias of 1 (docs/policies.md). Mixing a name of each kind for one option is
refused: the two could disagree.

Pure Python: no torch, no SB3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recurrent_rl.errors import UserInputError

CONTRIB_KEYS = ("lstm_hidden_size", "n_lstm_layers", "enable_critic_lstm", "shared_lstm", "lstm_kwargs")
# nn.LSTM keywords that sb3-contrib's lstm_kwargs may carry, with the value this package builds
_LSTM_KWARGS_FIXED = {"bias": True, "batch_first": False, "bidirectional": False, "proj_size": 0}

# sb3-contrib's own messages for the combinations it refuses (sb3_contrib/common/recurrent/policies.py)
SHARED_WITH_CRITIC_LSTM = "You must choose between shared LSTM, seperate or no LSTM for the critic."
SHARED_WITHOUT_SHARED_EXTRACTOR = "If the features extractor is not shared, the LSTM cannot be shared."


class ContribOptionError(UserInputError, AssertionError):
    """A combination of sb3-contrib policy options that cannot be honoured.

    An ``AssertionError`` too, because sb3-contrib refuses the same combinations with ``assert``
    (scripts and tests written for it catch that), and a ``ValueError`` like every bad input here.
    """


@dataclass(frozen=True)
class MemoryOptions:
    """The memory options of :class:`~recurrent_rl.nets.policies.RecurrentActorCriticPolicy`, resolved."""

    memory: str | None
    hidden_size: int | None
    num_layers: int | None
    critic_memory: str | None
    detach_critic_memory: bool
    dropout: float | None
    gate_bias: float | None = None


def translate_contrib_options(
    kwargs: dict[str, Any],
    memory: str | None,
    hidden_size: int | None,
    num_layers: int | None,
    critic_memory: str | None,
    detach_critic_memory: bool,
    dropout: float | None,
    default_memory: str,
    gate_bias: float | None = None,
) -> MemoryOptions:
    """Take sb3-contrib's keywords out of ``kwargs`` (in place) and merge them with ours.

    :param kwargs: the policy's remaining keyword arguments (SB3's and sb3-contrib's)
    :param memory: this package's option as the caller gave it (None: not given); likewise
        ``hidden_size``, ``num_layers``, ``critic_memory``, ``detach_critic_memory``, ``dropout``
    :param default_memory: the policy class's memory (``MlpLstmPolicy``: ``"lstm"``)
    :param gate_bias: this package's ``gate_bias`` as given (None: not given; 0 where sb3-contrib's
        names are used, its initialisation)
    :raises ContribOptionError: a contradiction, with what to pass instead
    """
    given = {key: kwargs.pop(key) for key in CONTRIB_KEYS if key in kwargs}
    options = MemoryOptions(memory, hidden_size, num_layers, critic_memory, detach_critic_memory, dropout, gate_bias)
    if not given:
        return options

    def conflict(contrib: str, ours: str, value: Any) -> ContribOptionError:
        return ContribOptionError(
            f"policy_kwargs has both {contrib}={given[contrib]!r} (sb3-contrib's name) and {ours}={value!r} "
            f"(this package's) for one option: pass only one of them"
        )

    names = ", ".join(sorted(given))
    resolved = memory if memory is not None else default_memory
    if resolved != "lstm":
        where = f"memory={memory!r}" if memory is not None else f"the policy's memory {default_memory!r}"
        raise ContribOptionError(
            f"policy_kwargs {names} are sb3-contrib's LSTM options, but {where} is not an LSTM: use an "
            f"LSTM policy ('MlpLstmPolicy', 'CnnLstmPolicy', 'MultiInputLstmPolicy') or memory='lstm', "
            f"or this package's names (hidden_size, num_layers, critic_memory)"
        )
    if "lstm_hidden_size" in given and hidden_size is not None:
        raise conflict("lstm_hidden_size", "hidden_size", hidden_size)
    if "n_lstm_layers" in given and num_layers is not None:
        raise conflict("n_lstm_layers", "num_layers", num_layers)
    for key in ("enable_critic_lstm", "shared_lstm"):
        if key in given and critic_memory is not None:
            raise conflict(key, "critic_memory", critic_memory)

    shared = bool(given.get("shared_lstm", False))
    critic_lstm = bool(given.get("enable_critic_lstm", True))  # sb3-contrib's defaults
    if shared and critic_lstm:
        raise ContribOptionError(
            f"{SHARED_WITH_CRITIC_LSTM} (sb3-contrib's enable_critic_lstm defaults to True: with "
            "shared_lstm=True pass enable_critic_lstm=False)"
        )
    if shared and not kwargs.get("share_features_extractor", True):
        raise ContribOptionError(SHARED_WITHOUT_SHARED_EXTRACTOR)
    if "enable_critic_lstm" in given or "shared_lstm" in given:
        critic_memory = "shared" if shared else ("separate" if critic_lstm else "none")
        # sb3-contrib's shared LSTM: the critic reads the actor's output detached, so the value
        # loss does not train the actor's LSTM (latent_pi.detach() in its _process_sequence)
        detach_critic_memory = detach_critic_memory or shared

    lstm_kwargs = dict(given.get("lstm_kwargs") or {})
    if "dropout" in lstm_kwargs:
        if dropout is not None:
            raise ContribOptionError(
                f"policy_kwargs has both lstm_kwargs['dropout']={lstm_kwargs['dropout']!r} and dropout={dropout!r}: "
                "pass only one of them"
            )
        dropout = float(lstm_kwargs.pop("dropout"))
    for key, value in list(lstm_kwargs.items()):
        if key in _LSTM_KWARGS_FIXED and value == _LSTM_KWARGS_FIXED[key]:
            lstm_kwargs.pop(key)
    if lstm_kwargs:
        raise ContribOptionError(
            f"lstm_kwargs {sorted(lstm_kwargs)} are not supported: the LSTM core takes dropout only "
            f"(and nn.LSTM's defaults {_LSTM_KWARGS_FIXED})"
        )
    return MemoryOptions(
        memory="lstm",
        hidden_size=int(given["lstm_hidden_size"]) if "lstm_hidden_size" in given else hidden_size,
        num_layers=int(given["n_lstm_layers"]) if "n_lstm_layers" in given else num_layers,
        critic_memory=critic_memory,
        detach_critic_memory=detach_critic_memory,
        dropout=dropout,
        # sb3-contrib's nn.LSTM keeps PyTorch's initialisation
        gate_bias=0.0 if gate_bias is None else gate_bias,
    )
