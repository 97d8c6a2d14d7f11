"""The Recipe section: one group per common step, its fields built from the step declarations.

The groups and widgets come from ``MedPrepCore.RecipeFields`` (which steps, which parameters,
their kinds, starts and limits) through ``RecipeWidgets`` (a widget per kind); this file only
lays them out and keeps them in step with the parameter node's ``recipeJson``: an edit of the
form writes the recipe JSON there (shown, read-only, in ``recipeJsonTextEdit``), a new
``recipeJson`` (a loaded recipe file, a loaded scene) is shown in the form. Validation is
MedPrepLib's own (``RecipeFields.recipeProblem``).
"""

from __future__ import annotations

import qt
import slicer
from MedPrepCore import RecipeFields
from slicer.i18n import tr as _

from . import RecipeWidgets


class RecipeEditor:
    """The recipe form of ``ui.recipeStepsWidget`` and its load / save buttons."""

    def __init__(self, ui) -> None:
        self.ui = ui
        self._parameterNode = None
        self._steps = RecipeFields.commonSteps()
        self._groups: dict[str, object] = {}  # op -> checkable QGroupBox
        self._widgets: dict[str, RecipeWidgets.FieldWidget] = {}  # field key -> widget
        self._switches: dict[str, object] = {}  # optional field key -> its on/off QCheckBox
        self._extra: dict = {}  # the recipe's keys besides version and steps (name, description)
        self._shownJson = None
        self._updating = False
        self._build()
        self.ui.loadRecipeButton.connect("clicked(bool)", self.onLoadRecipeButton)
        self.ui.saveRecipeButton.connect("clicked(bool)", self.onSaveRecipeButton)

    def _build(self) -> None:
        layout = self.ui.recipeStepsWidget.layout()
        for step in self._steps:
            group = qt.QGroupBox()
            group.title = step.op
            group.toolTip = step.title
            group.checkable = True
            group.checked = False
            group.connect("toggled(bool)", self.onFormChanged)
            form = qt.QFormLayout(group)
            start = RecipeFields.stepStart(step.op)
            for field in step.fields:
                widget = RecipeWidgets.makeWidget(field)
                if field.name in start:
                    widget.setValue(start[field.name])
                widget.onChanged(self.onFormChanged)
                name = field.name + (f" ({field.unit})" if field.unit else "")
                if field.optional:  # may be left out: an on/off box in the label column
                    switch = qt.QCheckBox(name)
                    switch.checked = field.name in start
                    widget.widget.enabled = switch.checked
                    switch.connect("toggled(bool)", widget.widget.setEnabled)
                    switch.connect("toggled(bool)", self.onFormChanged)
                    self._switches[field.key] = switch
                    form.addRow(switch, widget.widget)
                else:
                    form.addRow(name, widget.widget)
                self._widgets[field.key] = widget
            self._groups[step.op] = group
            layout.addWidget(group)

    # -- parameter node ------------------------------------------------------------------------------

    def setParameterNode(self, parameterNode) -> None:
        self._parameterNode = parameterNode
        self._shownJson = None
        self.updateFromParameterNode()

    def updateFromParameterNode(self) -> None:
        """Show the parameter node's recipe in the form (unless it is the one the form made)."""
        if self._parameterNode is None or self._parameterNode.recipeJson == self._shownJson:
            return
        self._shownJson = self._parameterNode.recipeJson
        try:
            recipe = RecipeFields.fromJson(self._shownJson)
        except Exception as exc:  # noqa: BLE001 - a RecipeError: shown, the form kept
            self.ui.recipeStatusLabel.text = _("Not a recipe: {problem}").format(problem=str(exc))
            return
        values, self._extra, problems = RecipeFields.valuesFromRecipe(recipe)
        self._updating = True
        try:
            self._writeForm(values)
        finally:
            self._updating = False
        self._showStatus(recipe, problems)

    # -- the form ------------------------------------------------------------------------------------

    def _readForm(self) -> RecipeFields.FormValues:
        values: RecipeFields.FormValues = {}
        for step in self._steps:
            if not self._groups[step.op].checked:
                continue
            values[step.op] = {
                f.name: self._widgets[f.key].value()
                for f in step.fields
                if not (f.optional and not self._switches[f.key].checked)
            }
        return values

    def _writeForm(self, values: RecipeFields.FormValues) -> None:
        for step in self._steps:
            params = values.get(step.op)
            self._groups[step.op].checked = params is not None
            for field in step.fields if params is not None else ():
                if field.optional:
                    self._switches[field.key].checked = field.name in params
                if field.name in params:
                    self._widgets[field.key].setValue(params[field.name])

    def onFormChanged(self, *unused) -> None:
        if self._updating or self._parameterNode is None:
            return
        recipe = RecipeFields.recipeFromValues(self._readForm(), self._extra)
        self._shownJson = RecipeFields.toJson(recipe)
        self._parameterNode.recipeJson = self._shownJson
        self._showStatus(recipe, [])

    def _showStatus(self, recipe: dict, problems: list[str]) -> None:
        problem = RecipeFields.recipeProblem(recipe)
        if problem:
            text = _("Not a valid recipe: {problem}").format(problem=problem)
        elif not recipe.get("steps"):
            text = _(
                "No steps: Preview copies the volume; Export uses its default recipe (CT: padding set to air, int16 HU)."
            )
        else:
            text = _("Valid recipe of {count} steps: Preview and Export run it.").format(count=len(recipe["steps"]))
        if problems:
            text += "\n" + _("The form cannot show: {what}. The recipe runs as loaded until the form is edited.").format(
                what="; ".join(problems)
            )
        self.ui.recipeStatusLabel.text = text

    # -- files ---------------------------------------------------------------------------------------

    def onLoadRecipeButton(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            self.ui.recipeStepsWidget, _("Load recipe"), "", _("MedPrep recipe") + " (*.json)"
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot load the recipe."), waitCursor=True):
            self._parameterNode.recipeJson = RecipeFields.toJson(RecipeFields.loadRecipeFile(path))
            self.updateFromParameterNode()

    def onSaveRecipeButton(self) -> None:
        path = qt.QFileDialog.getSaveFileName(
            self.ui.recipeStepsWidget, _("Save recipe"), "recipe.json", _("MedPrep recipe") + " (*.json)"
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot save the recipe."), waitCursor=True):
            written = RecipeFields.saveRecipeFile(RecipeFields.fromJson(self._parameterNode.recipeJson), path)
            self.ui.statusLabel.text = _("Saved the recipe as {path}").format(path=str(written))
