// The lab editor's CodeMirror 6 bundle (built by scripts/vendor.sh with esbuild into
// static/vendor/codemirror/codemirror.js): the pieces the editor uses, behind one global,
// window.KLCodeMirror, so the page's plain scripts need no module loader.
import { basicSetup } from "codemirror";
import { EditorView, keymap } from "@codemirror/view";
import { EditorState, Compartment } from "@codemirror/state";
import { StreamLanguage } from "@codemirror/language";
import { yaml } from "@codemirror/lang-yaml";
import { python } from "@codemirror/lang-python";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { dockerFile } from "@codemirror/legacy-modes/mode/dockerfile";
import { openSearchPanel } from "@codemirror/search";
import { linter, lintGutter, openLintPanel, forceLinting } from "@codemirror/lint";

function languageFor(name) {
  const base = name.split("/").pop().toLowerCase();
  if (/\.(ya?ml)$/.test(base)) return yaml();
  if (/\.py$/.test(base)) return python();
  if (base === "dockerfile" || base.startsWith("dockerfile.") || base.endsWith(".dockerfile") || base === "containerfile")
    return StreamLanguage.define(dockerFile);
  if (/\.(sh|bash)$/.test(base) || base === ".bashrc" || base === ".profile") return StreamLanguage.define(shell);
  return [];
}

// Diagnostics as the web tier sends them ({line, col, end_line, end_col, message, severity};
// lines 1-based, columns 0-based) as CodeMirror positions, clamped to the current text.
function toDiagnostics(doc, found) {
  const pos = (line, col) => {
    const l = doc.line(Math.min(Math.max(line, 1), doc.lines));
    return Math.min(l.from + Math.max(col, 0), l.to);
  };
  return found.map((d) => {
    const from = pos(d.line, d.col);
    let to = pos(d.end_line || d.line, d.end_col == null ? d.col : d.end_col);
    if (to <= from) to = Math.min(doc.lineAt(from).to, from + 1);
    if (to <= from) to = from;
    return { from, to, severity: d.severity === "warning" ? "warning" : "error", message: d.message, source: "lab cluster" };
  });
}

// create(parent, {doc, name, label, readOnly, onSave, onChange, validate}) -> {view, getDoc, setDoc, ...}
// validate(text) -> Promise of [{line, col, end_line, end_col, message, severity}] (or null to
// keep the marks shown): the editor asks after a pause in typing (@codemirror/lint).
function create(parent, opts) {
  const language = new Compartment();
  const editable = new Compartment();
  const extensions = [
    keymap.of([
      { key: "Mod-s", preventDefault: true, run: () => { if (opts.onSave) opts.onSave(); return true; } },
    ]),
    basicSetup,
    language.of(languageFor(opts.name || "")),
    editable.of([EditorState.readOnly.of(!!opts.readOnly), EditorView.editable.of(!opts.readOnly)]),
    EditorView.contentAttributes.of({ "aria-label": opts.label || "File editor" }),
    EditorView.updateListener.of((u) => { if (u.docChanged && opts.onChange) opts.onChange(); }),
  ];
  if (opts.validate) {
    let last = [];
    extensions.push(
      linter(async (view) => {
        const doc = view.state.doc;
        const found = await opts.validate(doc.toString());
        if (found === null) return last;
        if (view.state.doc !== doc) return last; // typed meanwhile: the next run answers
        last = toDiagnostics(doc, found);
        return last;
      }, { delay: 700 }),
      lintGutter(),
    );
  }
  const view = new EditorView({ parent, state: EditorState.create({ doc: opts.doc || "", extensions }) });
  return {
    view,
    getDoc: () => view.state.doc.toString(),
    setDoc: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    openSearch: () => openSearchPanel(view),
    openProblems: () => openLintPanel(view),
    revalidate: () => forceLinting(view),
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
}

window.KLCodeMirror = { create };
