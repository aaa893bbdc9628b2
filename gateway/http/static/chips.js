// The open sources as chips in the top bar: colour, label, lines per second (or the
// source's state when it is not live), and a close button. Updated in place, so a click
// on a chip is never lost to a redraw.

import { fmtRate } from './format.js';

export class Chips {
  constructor(box, onClose) {
    this.box = box;
    this.onClose = onClose;
    this.els = new Map();
  }

  /** @param {Map} sources stream -> {label, color, state, kind, rate} */
  render(sources) {
    for (const [stream, chip] of this.els) {
      if (!sources.has(stream)) {
        chip.remove();
        this.els.delete(stream);
      }
    }
    for (const [stream, src] of sources) {
      let chip = this.els.get(stream);
      if (!chip) {
        chip = this.make(stream, src.label);
        this.els.set(stream, chip);
        this.box.append(chip);
      }
      chip.dataset.kind = src.kind;
      chip.title = `${stream}\n${src.state}`;
      chip.style.setProperty('--chip', `var(--c${src.color})`);
      chip.querySelector('.chip-rate').textContent = src.state === 'live' ? `${fmtRate(src.rate)}/s` : src.state;
    }
  }

  make(stream, labelText) {
    const chip = document.createElement('span');
    chip.className = 'chip';
    chip.dataset.stream = stream;
    const label = document.createElement('span');
    label.className = 'chip-label';
    label.textContent = labelText;
    const rate = document.createElement('span');
    rate.className = 'chip-rate';
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'chip-close';
    close.textContent = '×';
    close.title = `Close ${stream}`;
    close.addEventListener('click', () => this.onClose(stream));
    chip.append(label, rate, close);
    return chip;
  }
}
