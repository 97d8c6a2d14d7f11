"""``medprep recipe --list | --markdown | --check R.json``: the recipe reference, and validation.

The reference is written from the step classes' declarations
(:mod:`MedPrepLib.recipe.reference`), the same text as ``docs/recipes.md``.
"""

from __future__ import annotations

import sys

HELP = "list every recipe step with its parameters, defaults and units, or check a recipe file"
DESCRIPTION = "The recipe reference (from the code itself), or the validation of a recipe JSON file."


def add_arguments(p) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="every op, parameter, default, unit and window preset")
    what.add_argument("--markdown", action="store_true", help="the same as Markdown (docs/recipes.md)")
    what.add_argument("--check", metavar="R.json", help="validate a recipe file and print its steps with every default")


def run(args) -> int:
    from ..recipe import reference

    if args.list:
        sys.stdout.write(reference.text())
    elif args.markdown:
        sys.stdout.write(reference.markdown())
    else:
        import json

        from ..recipe import Recipe

        recipe = Recipe.load(args.check)
        print(f"{args.check}: valid, {len(recipe.steps)} step(s)")
        for n, step in enumerate(recipe.steps, 1):
            print(f"  {n}. {json.dumps(step.to_params())}")
    return 0
