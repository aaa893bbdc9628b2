// Keyboard shortcuts: space pauses and resumes (anywhere but a text field, and without
// also pressing a focused button), `/` focuses the filter, Esc leaves the filter box.

/**
 * @param {object} o filter (the input), blocked() (a dialog is open),
 *   togglePause(), leaveFilter() (put back the filter in force)
 */
export function installKeys(o) {
  let swallowSpaceUp = false;
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t instanceof HTMLElement && (t.matches('input, textarea, select') || t.isContentEditable);
    if (ev.key === 'Escape' && t === o.filter) {
      o.leaveFilter();
      t.blur();
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || o.blocked()) return;
    if (ev.key === ' ') {
      ev.preventDefault();
      // A button would also be clicked on key up; that click is cancelled below.
      swallowSpaceUp = t instanceof HTMLButtonElement;
      o.togglePause();
    } else if (ev.key === '/') {
      ev.preventDefault();
      o.filter.focus();
      o.filter.select();
    }
  });
  document.addEventListener('keyup', (ev) => {
    if (ev.key === ' ' && swallowSpaceUp) {
      ev.preventDefault();
      swallowSpaceUp = false;
    }
  });
}
