"""Parameter sidebar: model, VAE, sampler, steps, CFG, seed, size, batch, clip skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QRegularExpression, QSignalBlocker, Qt
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.pipeline import api
from desktop_app.state.models import (
    BuiltinModelProvider,
    ModelChoice,
    ModelProvider,
    guess_family,
    size_presets,
)
from desktop_app.state.parameters import ParametersState

# The request's own defaults (width 512 …): the size a fresh sidebar starts from.
DEFAULT_REQUEST = api.GenerationRequest(prompt="")

TIPS = {
    "model": "The checkpoint that paints the image. Different models know different styles and "
             "subjects. SD 1.x models work best near 512×512, SDXL models near 1024×1024.",
    "vae": "The decoder that turns the finished latent picture into pixels. Keep the built-in one "
           "unless colours look washed out or grey; then try a separate VAE file.",
    "sampler": "The method that removes noise step by step. It changes the look a little and how "
               "many steps are needed: \"DPM++ 2M Karras\" is a good default; \"Euler a\" is "
               "softer and keeps changing with more steps; \"LCM\" needs an LCM model and "
               "4–8 steps.",
    "steps": "How many denoising steps to run. More steps add detail up to a point and take "
             "longer; 20–30 suits most samplers.",
    "cfg": "How strictly the image follows the prompt (CFG scale). Low values follow it loosely "
           "and look more natural; high values follow it literally and can oversaturate or burn. "
           "6–9 is the usual sweet spot.",
    "seed": "The starting noise. The same seed with the same settings gives the same image. "
            "Leave it empty (random) to get a new image every time.",
    "dice": "Use a new random seed for every run.",
    "reuse": "Put the seed of the last image back in, to refine it with other settings.",
    "width": "Image width in pixels (a multiple of 8). Sizes far from what the model was trained "
             "on can repeat subjects or distort bodies.",
    "height": "Image height in pixels (a multiple of 8).",
    "presets": "Sizes this kind of model was trained for. Pick one to avoid duplicated subjects.",
    "swap": "Swap width and height (portrait ↔ landscape).",
    "lock": "Keep the shape: changing one side changes the other in proportion.",
    "batch_count": "How many batches to run one after another. Each batch uses the next seeds.",
    "batch_size": "How many images to make at once in one batch. Faster per image, but needs "
                  "more graphics memory.",
    "clip_skip": "Stop the text encoder this many layers before its end (1 = use all layers). "
                 "Many anime-style SD 1.x models are meant for 2.",
}


def _slider(low: int, high: int) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(low, high)
    return slider


def _spin(low: int, high: int, step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setAlignment(Qt.AlignmentFlag.AlignRight)
    return spin


def _tool(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setAccessibleName(tip)
    button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    return button


class ParameterPanel(QWidget):
    """Edits a ParametersState; every control writes the state and follows its changes."""

    def __init__(self, state: ParametersState, provider: ModelProvider | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._provider: ModelProvider = provider or BuiltinModelProvider()
        self._sized_for: ModelChoice | None = None
        self._build()
        self.reload_models()
        self._follow_native_size()
        self._sync_all()
        state.value_changed.connect(self._on_state_value_changed)
        state.last_seed_changed.connect(self._on_state_last_seed_changed)
        self._on_state_last_seed_changed(state.last_seed)

    # -- construction ------------------------------------------------------------------
    def _build(self) -> None:
        self.model_combo, self.vae_combo, self.sampler_combo = QComboBox(), QComboBox(), QComboBox()
        self.sampler_combo.addItems(list(api.SAMPLER_NAMES))
        self.steps_slider, self.steps_spin = _slider(*api.STEPS_RANGE), _spin(*api.STEPS_RANGE)
        low, high = (int(v * 2) for v in api.CFG_RANGE)
        self.cfg_slider = _slider(low, high)
        self.cfg_spin = QDoubleSpinBox()
        self.cfg_spin.setRange(*api.CFG_RANGE)
        self.cfg_spin.setSingleStep(0.5)
        self.cfg_spin.setDecimals(1)
        self.cfg_spin.setAlignment(Qt.AlignmentFlag.AlignRight)
        for spin in (self.steps_spin, self.cfg_spin):
            spin.setFixedWidth(64)
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText("Random")
        self.seed_edit.setValidator(QRegularExpressionValidator(QRegularExpression(r"-1|\d{0,10}")))
        self.random_seed_button = _tool("⚄", TIPS["dice"])
        self.reuse_seed_button = _tool("♻", TIPS["reuse"])
        self.width_spin = _spin(*api.SIZE_RANGE, step=api.SIZE_MULTIPLE)
        self.height_spin = _spin(*api.SIZE_RANGE, step=api.SIZE_MULTIPLE)
        self.size_preset_combo = QComboBox()
        self.swap_button = _tool("⇄", TIPS["swap"])
        self.aspect_lock_button = _tool("Lock", TIPS["lock"])
        self.aspect_lock_button.setCheckable(True)
        for button in (self.swap_button, self.aspect_lock_button, self.random_seed_button,
                       self.reuse_seed_button):
            button.setFixedWidth(44 if button in (self.swap_button, self.aspect_lock_button)
                                 else 28)
        self.batch_count_spin = _spin(*api.BATCH_COUNT_RANGE)
        self.batch_size_spin = _spin(*api.BATCH_SIZE_RANGE)
        self.clip_skip_spin = _spin(*api.CLIP_SKIP_RANGE)
        self._set_tips()
        self._layout()
        self._connect()

    def _set_tips(self) -> None:
        pairs = [(self.model_combo, "model"), (self.vae_combo, "vae"),
                 (self.sampler_combo, "sampler"), (self.steps_slider, "steps"),
                 (self.steps_spin, "steps"), (self.cfg_slider, "cfg"), (self.cfg_spin, "cfg"),
                 (self.seed_edit, "seed"), (self.width_spin, "width"),
                 (self.height_spin, "height"), (self.size_preset_combo, "presets"),
                 (self.batch_count_spin, "batch_count"), (self.batch_size_spin, "batch_size"),
                 (self.clip_skip_spin, "clip_skip")]
        for widget, key in pairs:
            widget.setToolTip(TIPS[key])

    def _layout(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(8)

        def row(label: str, *widgets: QWidget, stretch_first: bool = True) -> None:
            box = QHBoxLayout()
            box.setSpacing(6)
            for index, widget in enumerate(widgets):
                box.addWidget(widget, 1 if index == 0 and stretch_first else 0)
            caption = QLabel(label)
            caption.setBuddy(widgets[0])
            caption.setToolTip(widgets[0].toolTip())
            form.addRow(caption, box)

        row("&Model", self.model_combo)
        row("&VAE", self.vae_combo)
        row("Sa&mpler", self.sampler_combo)
        row("&Steps", self.steps_slider, self.steps_spin)
        row("&CFG scale", self.cfg_slider, self.cfg_spin)
        row("S&eed", self.seed_edit, self.random_seed_button, self.reuse_seed_button)
        row("Si&ze", self.size_preset_combo)
        row("&Width", self.width_spin, self.swap_button, stretch_first=True)
        row("&Height", self.height_spin, self.aspect_lock_button, stretch_first=True)
        row("&Batch count", self.batch_count_spin)
        row("Batch s&ize", self.batch_size_spin)
        row("Clip s&kip", self.clip_skip_spin)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 12, 12, 12)
        title = QLabel("Parameters")
        title.setObjectName("sectionTitle")
        outer.addWidget(title)
        outer.addLayout(form)
        outer.addStretch(1)

    def _connect(self) -> None:
        self.model_combo.currentIndexChanged.connect(self._on_model_combo_changed)
        self.vae_combo.currentIndexChanged.connect(
            lambda _i: self.state.set_value("vae", self.vae_combo.currentData()))
        self.sampler_combo.currentTextChanged.connect(
            lambda text: self.state.set_value("sampler", text))
        self.steps_slider.valueChanged.connect(lambda v: self.state.set_value("steps", v))
        self.steps_spin.valueChanged.connect(lambda v: self.state.set_value("steps", v))
        self.cfg_slider.valueChanged.connect(lambda v: self.state.set_value("cfg_scale", v / 2))
        self.cfg_spin.valueChanged.connect(lambda v: self.state.set_value("cfg_scale", v))
        self.seed_edit.textEdited.connect(self._on_seed_edit_edited)
        self.random_seed_button.clicked.connect(self.state.randomize_seed)
        self.reuse_seed_button.clicked.connect(self.state.reuse_last_seed)
        self.width_spin.valueChanged.connect(lambda v: self.state.set_dimension("width", v))
        self.height_spin.valueChanged.connect(lambda v: self.state.set_dimension("height", v))
        self.size_preset_combo.activated.connect(self._on_size_preset_activated)
        self.swap_button.clicked.connect(self.state.swap_size)
        self.aspect_lock_button.toggled.connect(
            lambda on: self.state.set_value("aspect_locked", on))
        self.batch_count_spin.valueChanged.connect(
            lambda v: self.state.set_value("batch_count", v))
        self.batch_size_spin.valueChanged.connect(lambda v: self.state.set_value("batch_size", v))
        self.clip_skip_spin.valueChanged.connect(lambda v: self.state.set_value("clip_skip", v))

    # -- models ------------------------------------------------------------------------
    def set_provider(self, provider: ModelProvider) -> None:
        """Use another source of models and VAEs (the library panel, once it exists)."""
        self._provider = provider
        self.reload_models()

    def reload_models(self) -> None:
        """Refill the pickers from the provider, keeping the current choice when still offered."""
        with QSignalBlocker(self.model_combo), QSignalBlocker(self.vae_combo):
            self.model_combo.clear()
            for choice in self._provider.models():
                self.model_combo.addItem(f"{choice.name}  ·  {choice.family.label}", choice)
            self.vae_combo.clear()
            for vae in self._provider.vaes():
                self.vae_combo.addItem(vae.name, vae.path)
        self._sync("model")
        self._sync("vae")
        self._fill_presets()

    def current_model(self) -> ModelChoice | None:
        data = self.model_combo.currentData()
        return data if isinstance(data, ModelChoice) else None

    def _on_model_combo_changed(self, _index: int) -> None:
        choice = self.current_model()
        if choice is not None:
            self.state.set_value("model", choice.path)
        self._fill_presets()
        self._follow_native_size()

    def _follow_native_size(self) -> None:
        """Switch to the new model's native size unless the person picked another size.

        The size counts as untouched when it is still the previous model's native size (or,
        before any model was chosen, the request's default): so the 64×64 demo model starts at
        64×64 and picking an SDXL checkpoint afterwards moves to 1024×1024.
        """
        choice = self.current_model()
        if choice is None:
            return
        previous, self._sized_for = self._sized_for, choice
        before = previous.native_size if previous is not None else DEFAULT_REQUEST.width
        size = (self.state.value("width"), self.state.value("height"))
        if size == (before, before) and size != (choice.native_size, choice.native_size):
            self._set_size(choice.native_size, choice.native_size)

    def _set_size(self, width: int, height: int) -> None:
        locked = self.state.value("aspect_locked")
        self.state.set_value("aspect_locked", False)  # a preset sets both sides as given
        self.state.set_value("width", width)
        self.state.set_value("height", height)
        self.state.set_value("aspect_locked", locked)

    def _fill_presets(self) -> None:
        choice = self.current_model()
        with QSignalBlocker(self.size_preset_combo):
            self.size_preset_combo.clear()
            self.size_preset_combo.addItem("Custom", None)
            if choice is not None:
                for width, height in size_presets(choice.family, choice.native_size):
                    self.size_preset_combo.addItem(f"{width} × {height}", (width, height))
        self._sync_preset()

    def _on_size_preset_activated(self, index: int) -> None:
        size = self.size_preset_combo.itemData(index)
        if size is not None:
            self._set_size(size[0], size[1])

    def _on_seed_edit_edited(self, text: str) -> None:
        text = text.strip()
        seed = int(text) if text and text != "-" else api.RANDOM_SEED
        self.state.set_value("seed", min(seed, api.MAX_SEED))

    # -- state → widgets ----------------------------------------------------------------
    def _on_state_value_changed(self, name: str, _value: Any) -> None:
        self._sync(name)

    def _on_state_last_seed_changed(self, seed: int) -> None:
        self.reuse_seed_button.setEnabled(seed != api.RANDOM_SEED)
        if seed != api.RANDOM_SEED:
            self.reuse_seed_button.setToolTip(f"{TIPS['reuse']} (last: {seed})")

    def _sync_all(self) -> None:
        for name in self.state.to_dict():
            self._sync(name)

    def _sync(self, name: str) -> None:
        value = self.state.value(name)
        setters = {
            "steps": lambda: self._set_pair(self.steps_slider, value, self.steps_spin, value),
            "cfg_scale": lambda: self._set_pair(self.cfg_slider, round(value * 2),
                                                self.cfg_spin, value),
            "sampler": lambda: self.sampler_combo.setCurrentText(value),
            "width": lambda: self.width_spin.setValue(value),
            "height": lambda: self.height_spin.setValue(value),
            "batch_count": lambda: self.batch_count_spin.setValue(value),
            "batch_size": lambda: self.batch_size_spin.setValue(value),
            "clip_skip": lambda: self.clip_skip_spin.setValue(value),
            "aspect_locked": lambda: self.aspect_lock_button.setChecked(value),
            "seed": lambda: self._sync_seed(value),
            "model": lambda: self._select_model(value),
            "vae": lambda: self._select_data(self.vae_combo, value),
        }
        setter = setters.get(name)
        if setter is None:
            return
        widgets = [self.steps_slider, self.steps_spin, self.cfg_slider, self.cfg_spin,
                   self.sampler_combo, self.width_spin, self.height_spin, self.batch_count_spin,
                   self.batch_size_spin, self.clip_skip_spin, self.aspect_lock_button,
                   self.seed_edit, self.model_combo, self.vae_combo]
        blockers = [QSignalBlocker(w) for w in widgets]
        try:
            setter()
        finally:
            del blockers
        if name in ("width", "height"):
            self._sync_preset()
        if name == "model":
            self._fill_presets()

    @staticmethod
    def _set_pair(slider: QSlider, slider_value: int, spin: Any, spin_value: Any) -> None:
        slider.setValue(slider_value)
        spin.setValue(spin_value)

    def _sync_seed(self, seed: int) -> None:
        text = "" if seed == api.RANDOM_SEED else str(seed)
        if self.seed_edit.text().strip() != text:
            self.seed_edit.setText(text)

    def _sync_preset(self) -> None:
        size = (self.state.value("width"), self.state.value("height"))
        index = self.size_preset_combo.findData(size)
        with QSignalBlocker(self.size_preset_combo):
            self.size_preset_combo.setCurrentIndex(max(0, index))

    def _select_model(self, path: str | None) -> None:
        if not self._select_data(self.model_combo, path, by_path=True) and path is not None:
            # A model the provider does not list (restored parameters): offer it anyway.
            choice = ModelChoice(Path(path).stem, path, guess_family(Path(path)))
            self.model_combo.addItem(f"{choice.name}  ·  {choice.family.label}", choice)
            self.model_combo.setCurrentIndex(self.model_combo.count() - 1)

    @staticmethod
    def _select_data(combo: QComboBox, value: Any, by_path: bool = False) -> bool:
        for index in range(combo.count()):
            data = combo.itemData(index)
            if (data.path if by_path and isinstance(data, ModelChoice) else data) == value:
                combo.setCurrentIndex(index)
                return True
        return False
