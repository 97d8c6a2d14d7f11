"""One Qt widget per recipe field kind (``MedPrepCore.RecipeFields.KINDS``); nothing per parameter.

:func:`makeWidget` turns a :class:`~MedPrepCore.RecipeFields.Field` into a :class:`FieldWidget`:
the widget of its kind (:data:`WIDGETS`), set up from the field's limits, choices and doc, with
``value()`` / ``setValue()`` in the recipe's own types and ``onChanged(callback)``. Which
parameters exist, their defaults and limits all come from the step declarations.
"""

from __future__ import annotations

import qt
from slicer.i18n import tr as _

_BIG = 1e9  # the spin boxes' range where a parameter declares no bound


class FieldWidget:
    """A field's widget (``widget``) and its value in the recipe's types."""

    def __init__(self, field, widget) -> None:
        self.field = field
        self.widget = widget
        self.widget.toolTip = field.doc + (f" [{field.unit}]" if field.unit else "")

    def value(self):
        raise NotImplementedError

    def setValue(self, value) -> None:
        raise NotImplementedError

    def onChanged(self, callback) -> None:
        raise NotImplementedError


def _spinBox(field, integer: bool):
    box = qt.QSpinBox() if integer else qt.QDoubleSpinBox()
    low = field.minimum if field.minimum is not None else -_BIG
    if not integer:
        box.decimals = 3
        low = 10**-box.decimals if field.positive else low
        box.setRange(low, _BIG)
    else:
        box.setRange(int(max(low, -(2**31) + 1)), 2**31 - 1)
    return box


class NumberWidget(FieldWidget):
    def __init__(self, field, integer: bool = False) -> None:
        super().__init__(field, _spinBox(field, integer))
        self._type = int if integer else float

    def value(self):
        return self._type(self.widget.value)

    def setValue(self, value) -> None:
        self.widget.value = value

    def onChanged(self, callback) -> None:
        self.widget.connect("valueChanged(double)" if self._type is float else "valueChanged(int)", callback)


class BoolWidget(FieldWidget):
    def __init__(self, field) -> None:
        super().__init__(field, qt.QCheckBox())

    def value(self):
        return bool(self.widget.checked)

    def setValue(self, value) -> None:
        self.widget.checked = bool(value)

    def onChanged(self, callback) -> None:
        self.widget.connect("toggled(bool)", callback)


class ChoiceWidget(FieldWidget):
    def __init__(self, field) -> None:
        super().__init__(field, qt.QComboBox())
        self.widget.editable = field.editable  # suggestions: other text is accepted too
        for choice in field.choices:
            self.widget.addItem(str(choice))

    def value(self):
        return self.widget.currentText

    def setValue(self, value) -> None:
        index = self.widget.findText(str(value))
        if index >= 0:
            self.widget.currentIndex = index
        elif self.field.editable:
            self.widget.setEditText(str(value))

    def onChanged(self, callback) -> None:
        self.widget.connect("currentTextChanged(QString)", callback)


class VectorWidget(FieldWidget):
    """One spin box per axis (``field.axes``: x, y, z or low, high)."""

    def __init__(self, field, integer: bool) -> None:
        super().__init__(field, qt.QWidget())
        layout = qt.QHBoxLayout(self.widget)
        layout.setContentsMargins(0, 0, 0, 0)
        self._boxes = [NumberWidget(field, integer) for _axis in field.axes]
        for axis, box in zip(field.axes, self._boxes):
            box.widget.prefix = f"{axis}: "
            layout.addWidget(box.widget)

    def value(self):
        return [box.value() for box in self._boxes]

    def setValue(self, value) -> None:
        for box, v in zip(self._boxes, value):
            box.setValue(v)

    def onChanged(self, callback) -> None:
        for box in self._boxes:
            box.onChanged(callback)


class TextWidget(FieldWidget):
    """A line edit holding a JSON value or plain text (any kind the panel has no widget for)."""

    def __init__(self, field) -> None:
        super().__init__(field, qt.QLineEdit())
        self.widget.placeholderText = _("JSON value or text")

    def value(self):
        return self.field.fromText(self.widget.text)

    def setValue(self, value) -> None:
        self.widget.text = self.field.toText(value)

    def onChanged(self, callback) -> None:
        self.widget.connect("textEdited(QString)", callback)


WIDGETS = {
    "number": lambda field: NumberWidget(field),
    "integer": lambda field: NumberWidget(field, integer=True),
    "bool": BoolWidget,
    "choice": ChoiceWidget,
    "numbers": lambda field: VectorWidget(field, integer=False),
    "integers": lambda field: VectorWidget(field, integer=True),
    "text": TextWidget,
}
"""The widget of each field kind."""


def makeWidget(field) -> FieldWidget:
    """The widget of ``field``, showing its start value."""
    widget = WIDGETS.get(field.kind, TextWidget)(field)
    widget.setValue(field.initial)
    return widget
