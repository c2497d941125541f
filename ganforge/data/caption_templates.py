"""What the synthetic captioned data sets (:mod:`ganforge.data.shapes`, :mod:`ganforge.data.mnist_captions`) share:
caption templates and the machinery that draws captions from them, the attribute checks, and the seeds and checks
of their splits."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.registry import ConfigError

# ----------------------------------------------------------------------------------------------------------------------
# Caption templates: shared machinery

P_STATE = 0.7  # each optional attribute is stated with this probability, so some captions leave attributes free

Slots = dict[str, "str | None"]


def _cat(*parts: str | None) -> str:
    """The given parts that are not empty, joined by spaces."""
    return " ".join(p for p in parts if p)


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article ("a small circle", "an eight", "an 8", "an upright one")."""
    first = phrase.split()[0].lower()
    vowel = first[0] in "aeiou8" and not first.startswith("one")  # "a one": said "wun"
    return ("an " if vowel else "a ") + phrase


def _and(items: list[str | None]) -> str:
    """"x", "x and y", "x, y and z" of the stated items ("" if none)."""
    items = [i for i in items if i]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _listing(*items: str | None) -> str:
    return ", ".join(i for i in items if i)


@dataclass(frozen=True)
class CaptionTemplate:
    """A sentence structure: ``make(slots)`` writes a caption from slot words (``None`` for what it leaves free).

    ``id`` is what :attr:`CaptionSet.phrasing` records; ``needs`` are slots the template is only drawn with (the
    sentence would not read well, or would look like another template's, without them).
    """

    id: int
    make: Callable[[Slots], str]
    needs: tuple[str, ...] = ()  # slots that must be stated for the template to read well (or be told apart)
    example: str = ""


def _caption(
    attributes: np.ndarray,
    captions_per_image: int,
    seed: int,
    templates: tuple[CaptionTemplate, ...],
    slot_words: Callable[[np.ndarray, np.ndarray, np.ndarray], Slots],
    slot_of: tuple[str, ...],
    always: tuple[int, ...],
    what: str,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Captions for ``attributes`` (N, A): texts, image_of, mentions (M, A) and phrasing ids.

    Attributes in ``always`` are stated by every caption, the others each with probability :data:`P_STATE`;
    ``slot_words(values, stated, u)`` turns one caption's values, stated mask and uniforms into template slots,
    ``slot_of[j]`` naming the slot of attribute ``j``. The template is drawn among those whose needs are stated.
    """
    if not isinstance(captions_per_image, (int, np.integer)) or captions_per_image < 1:
        raise ConfigError(f"{what}: captions_per_image must be a positive integer, got {captions_per_image!r}")
    rng = np.random.default_rng(seed)
    n, a = attributes.shape
    image_of = np.repeat(np.arange(n, dtype=np.int64), captions_per_image)
    values = attributes[image_of]
    m = len(image_of)
    stated = rng.random((m, a)) < P_STATE
    stated[:, list(always)] = True
    u = rng.random((m, 8))  # word choices (columns 0..6) and the template (column 7)
    texts, phrasing = [], np.empty(m, dtype=np.int64)
    for i in range(m):
        slots = slot_words(values[i], stated[i], u[i])
        given = {slot_of[j] for j in range(a) if stated[i, j]}
        ok = [t for t in templates if set(t.needs) <= given]
        t = ok[int(u[i, 7] * len(ok))]
        texts.append(t.make(slots))
        phrasing[i] = t.id
    mentions = np.where(stated, values, -1).astype(np.int64)
    return texts, image_of, mentions, phrasing


def _pick(options: tuple[str, ...], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _attribute_array(attributes: np.ndarray | Tensor, schema: dict[str, list[str]], what: str) -> np.ndarray:
    a = attributes.detach().cpu().numpy() if isinstance(attributes, Tensor) else np.asarray(attributes)
    if a.ndim != 2 or a.shape[1] != len(schema) or not np.issubdtype(a.dtype, np.integer):
        raise ConfigError(f"{what}: attributes must be integers of shape (N, {len(schema)}) "
                          f"({', '.join(schema)}), got {a.dtype} {a.shape}")
    sizes = np.array([len(v) for v in schema.values()])
    if len(a) and ((a < 0) | (a >= sizes)).any():
        raise ConfigError(f"{what}: attribute values out of range (value counts: "
                          f"{', '.join(f'{k} {len(v)}' for k, v in schema.items())})")
    return a.astype(np.int64)


def _caption_tensors(attributes: Any, schema: dict[str, list[str]], what: str, always: tuple[str, ...],
                     captions_per_image: int, seed: int, templates: Any, slots: Any,
                     slot_names: Any) -> tuple[list[str], Tensor, Tensor, Tensor]:
    """The checks and conversions :func:`caption_shapes` and :func:`caption_digits` share around :func:`_caption`."""
    a = _attribute_array(attributes, schema, what)
    names = list(schema)
    bad = [k for k in always if k not in names]
    if bad:
        raise ConfigError(f"{what}: unknown attribute '{bad[0]}' in always (choices: {', '.join(names)})")
    texts, image_of, mentions, phrasing = _caption(
        a, captions_per_image, seed, templates, slots, slot_names,
        tuple(sorted({0, *(names.index(k) for k in always)})), what,
    )
    return texts, torch.from_numpy(image_of), torch.from_numpy(mentions), torch.from_numpy(phrasing)


def _all_combos(schema: dict[str, list[str]]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(len(v)) for v in schema.values()], indexing="ij"), -1).reshape(
        -1, len(schema))


def _combo_mask(attrs: np.ndarray, schema: dict[str, list[str]], pairs: tuple[tuple[str, str], ...],
                names: tuple[str, str]) -> np.ndarray:
    """Whether each row's (names[0], names[1]) values are one of ``pairs``."""
    i, j = list(schema).index(names[0]), list(schema).index(names[1])
    held = {(schema[names[0]].index(p), schema[names[1]].index(q)) for p, q in pairs}
    return np.array([(int(r[i]), int(r[j])) in held for r in attrs], dtype=bool)


def _split_seeds(seed: int, split: int) -> list[int]:
    # One independent stream per split: no split's images or captions repeat another's draws.
    return [int(v) for v in np.random.SeedSequence([int(seed), split]).generate_state(3)]


def _positive(value: Any, name: str, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


__all__ = ["P_STATE", "CaptionTemplate"]
