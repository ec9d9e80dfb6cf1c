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

function languageFor(name) {
  const base = name.split("/").pop().toLowerCase();
  if (/\.(ya?ml)$/.test(base)) return yaml();
  if (/\.py$/.test(base)) return python();
  if (base === "dockerfile" || base.startsWith("dockerfile.") || base.endsWith(".dockerfile") || base === "containerfile")
    return StreamLanguage.define(dockerFile);
  if (/\.(sh|bash)$/.test(base) || base === ".bashrc" || base === ".profile") return StreamLanguage.define(shell);
  return [];
}

// create(parent, {doc, name, label, readOnly, onSave, onChange}) -> {view, getDoc, setDoc}
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
  const view = new EditorView({ parent, state: EditorState.create({ doc: opts.doc || "", extensions }) });
  return {
    view,
    getDoc: () => view.state.doc.toString(),
    setDoc: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    openSearch: () => openSearchPanel(view),
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
}

window.KLCodeMirror = { create };
