// The sign-up and preferences forms, enhanced (each works without this file):
// the topic picker's chips and filter box, the weekday shown only for weekly issues, and
// a file over the upload limit refused before it is sent (the server refuses it too, but
// only after the whole upload, on a page of its own).
(function () {
  "use strict";

  function picker(root) {
    var boxes = Array.prototype.slice.call(root.querySelectorAll("input[name=topics]"));
    var chips = root.querySelector("[data-chips]");
    var none = root.querySelector("[data-chips-none]");
    var groups = Array.prototype.slice.call(root.querySelectorAll("details.topic-group"));

    function render() {
      chips.textContent = "";
      boxes.forEach(function (box) {
        if (!box.checked) return;
        var item = document.createElement("li");
        item.className = "chip";
        item.appendChild(document.createTextNode(box.getAttribute("data-name") + " "));
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "chip-remove";
        remove.setAttribute("aria-label", "Remove " + box.getAttribute("data-name"));
        remove.textContent = "×";
        remove.addEventListener("click", function () {
          box.checked = false;
          render();
          (chips.querySelector("button") || filter || box).focus();
        });
        item.appendChild(remove);
        chips.appendChild(item);
      });
      none.hidden = chips.children.length > 0;
      groups.forEach(function (group) {
        var count = group.querySelectorAll("input[name=topics]:checked").length;
        group.querySelector("[data-group-count]").textContent = count ? count + " chosen" : "";
      });
    }

    var wrap = root.querySelector("[data-topic-filter]");
    var filter = wrap && wrap.querySelector("input");
    var empty = root.querySelector("[data-filter-empty]");
    var opened = null;  // which groups were open before filtering began
    if (filter) {
      wrap.hidden = false;
      filter.addEventListener("input", function () {
        var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
        if (words.length && opened === null) opened = groups.map(function (g) { return g.open; });
        var shown = 0;
        groups.forEach(function (group, index) {
          var inGroup = 0;
          group.querySelectorAll("label.topic").forEach(function (label) {
            var text = label.getAttribute("data-search");
            var match = words.every(function (w) { return text.indexOf(w) !== -1; });
            label.hidden = !match;
            if (match) inGroup++;
          });
          group.hidden = inGroup === 0;
          if (words.length) group.open = inGroup > 0;
          else if (opened !== null) group.open = opened[index];
          shown += inGroup;
        });
        if (!words.length) opened = null;
        empty.hidden = shown > 0;
      });
    }
    boxes.forEach(function (box) { box.addEventListener("change", render); });
    render();
  }

  function weekdayOnlyWeekly(form) {
    var field = form.querySelector("[data-weekly-only]");
    var radios = form.querySelectorAll("input[name=frequency]");
    if (!field || !radios.length) return;
    function update() {
      var weekly = form.querySelector("input[name=frequency][value=weekly]");
      field.hidden = !(weekly && weekly.checked);
    }
    radios.forEach(function (radio) { radio.addEventListener("change", update); });
    update();
  }

  function fileLimit(input) {
    var max = parseInt(input.getAttribute("data-max-bytes"), 10);
    if (!(max > 0)) return;
    function megabytes(n) { return (n / 1048576).toFixed(1).replace(/\.0$/, ""); }
    function check(report) {
      var file = input.files && input.files[0];
      var message = "";
      if (file && file.size > max) {
        message = "This file is " + megabytes(file.size) + " MB; a library may be at most " +
          megabytes(max) + " MB. Choose a smaller file, or remove it and paste arXiv ids " +
          "or DOIs instead.";
      }
      input.setCustomValidity(message);
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
      if (message && report) input.reportValidity();
    }
    input.addEventListener("change", function () { check(true); });
    check(false);  // a file the browser kept on the way back to this page
    // The sign-up form is novalidate (the server's messages are the accessible ones),
    // so its submit does not stop at an invalid field by itself.
    if (input.form) {
      input.form.addEventListener("submit", function (event) {
        if (!input.validationMessage) return;
        event.preventDefault();
        input.focus();
        input.reportValidity();
      });
      input.form.addEventListener("reset", function () {
        setTimeout(function () { check(false); }, 0);
      });
    }
  }

  document.querySelectorAll("[data-topic-picker]").forEach(picker);
  document.querySelectorAll("input[type=file][data-max-bytes]").forEach(fileLimit);
  document.querySelectorAll("form").forEach(weekdayOnlyWeekly);
})();
