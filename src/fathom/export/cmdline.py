"""Shell launch scripts: write them readably, and read them back (variables, continuations, flags) with shlex.

Reading does what a shell would do for the simple scripts engines are launched with: ``NAME=${NAME:-default}``
assignments, ``$NAME`` / ``${NAME}`` expansion, ``VAR=value command ...`` environment prefixes and backslash line
continuations. Anything fancier (loops, command substitution) is left as literal text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from fathom.errors import FathomInputError

_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def quote(value: object) -> str:
    """A shell word; variable references stay expandable inside double quotes."""
    text = str(value)
    if "$" in text:
        return '"' + text.replace('"', '\\"') + '"'
    return shlex.quote(text)


def render_command(
    program: list[str],
    options: Iterable[tuple[str, object]],
    env: dict[str, str] | None = None,
    positional: Iterable[str] = (),
) -> str:
    """``ENV=.. program positional --flag value`` with one flag per line (``value None`` = a bare flag, a list or
    tuple = one word each, for flags that take several)."""
    head = [f"{k}={quote(v)}" for k, v in (env or {}).items()] + [quote(p) for p in program]
    head += [quote(p) for p in positional]
    lines = [" ".join(head)]
    for flag, value in options:
        if value is None:
            lines.append(f"  {quote(flag)}")
        else:
            words = value if isinstance(value, list | tuple) else [value]
            lines.append(f"  {flag} " + " ".join(quote(w) for w in words))
    return " \\\n".join(lines) + "\n"


@dataclass
class Script:
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[tuple[dict[str, str], list[str]]] = field(default_factory=list)  # (env prefix, words)
    comments: list[str] = field(default_factory=list)

    def comment_value(self, key: str) -> str | None:
        """The value of a ``# key: value`` comment line."""
        for line in self.comments:
            body = line.lstrip("#").strip()
            if body.lower().startswith(key.lower() + ":"):
                return body.split(":", 1)[1].strip() or None
        return None

    def find(self, *programs: str) -> tuple[dict[str, str], list[str]] | None:
        """The first command any of whose words ends with one of ``programs`` (``torchrun``, ``vllm`` ...)."""
        for env, words in self.commands:
            if any(w.rsplit("/", 1)[-1] in programs for w in words):
                return env, words
        return None


def _expand(text: str, variables: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(4)
        if name in variables:
            return variables[name]
        if m.group(2) == "-":
            return m.group(3)
        return m.group(0)

    return _VAR.sub(sub, text)


def parse_script(text: str) -> Script:
    """Logical lines of a shell script: comments, variable assignments and commands (words expanded)."""
    script = Script()
    logical = re.sub(r"\\\r?\n", " ", text)
    for raw in logical.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            script.comments.append(line)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise FathomInputError(f"launch script: cannot split {line[:60]!r}: {exc}") from None
        if not words:
            continue
        env: dict[str, str] = {}
        while words and _ASSIGN.match(words[0]):
            name, value = _ASSIGN.match(words[0]).groups()
            env[name] = _expand(value, script.variables)
            words = words[1:]
        if words and words[0] == "export":
            words = words[1:]
            for w in words:
                if m := _ASSIGN.match(w):
                    script.variables[m.group(1)] = _expand(m.group(2), script.variables)
            continue
        if not words:
            script.variables.update(env)
            continue
        script.commands.append((env, [_expand(w, script.variables) for w in words]))
    return script


class Options:
    """Flags of one command line: ``--flag value``, ``--flag=value``, bare boolean flags, and ``multi_flags`` that
    take every word up to the next flag (argparse ``nargs='+'``; kept space-joined, split by ``words``)."""

    def __init__(self, words: list[str], source: str, bare_flags: Iterable[str] = (), multi_flags: Iterable[str] = ()):
        self.source = source
        self.values: dict[str, str | bool] = {}
        self.positional: list[str] = []
        bare, multi = set(bare_flags), set(multi_flags)
        i = 0
        while i < len(words):
            w = words[i]
            if _looks_like_flag(w):
                name, eq, val = w.partition("=")
                if eq:
                    self.values[name] = val
                elif name in bare or i + 1 == len(words) or _looks_like_flag(words[i + 1]):
                    self.values[name] = True
                elif name in multi:
                    j = i + 1
                    while j < len(words) and not _looks_like_flag(words[j]):
                        j += 1
                    self.values[name] = " ".join(words[i + 1 : j])
                    i = j - 1
                else:
                    self.values[name] = words[i + 1]
                    i += 1
            else:
                self.positional.append(w)
            i += 1

    def has(self, *names: str) -> bool:
        return any(n in self.values for n in names)

    def flag(self, name: str) -> bool:
        value = self.values.get(name, False)
        if isinstance(value, bool):
            return value
        return value.lower() in ("1", "true", "yes", "on")

    def text(self, *names: str, default: str | None = None) -> str | None:
        for n in names:
            if n in self.values:
                v = self.values[n]
                if isinstance(v, bool):
                    raise FathomInputError(f"{self.source}: {n} needs a value")
                return v
        return default

    def words(self, *names: str) -> list[str]:
        """A multi-word flag's words (empty when absent)."""
        text = self.text(*names)
        return text.split() if text else []

    def number(self, *names: str, default=None, kind=int, minimum=None):
        """The flag's value as ``kind``; below ``minimum`` (when given) is an input error naming the flag."""
        raw = self.text(*names)
        if raw is None:
            return default
        what = "an integer" if kind is int else "a number"
        try:
            value = kind(raw)
        except ValueError:
            raise FathomInputError(f"{self.source}: {names[0]} expects {what}, got {raw!r}") from None
        if minimum is not None and not value >= minimum:
            raise FathomInputError(f"{self.source}: {names[0]} expects {what} of at least {minimum}, got {raw!r}")
        return value


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _looks_like_flag(word: str) -> bool:
    return word.startswith("-") and not _is_number(word)
