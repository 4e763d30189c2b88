// Tunewise: a cited passage opens beside the chat when its link is clicked, and only then (issue #18).
//
// The passages are Chainlit elements with display="side": a click on a citation id in a message opens that
// passage in Chainlit's side panel, next to the conversation (display="page" replaced the chat page instead).
// Since Chainlit 2.11 the panel also opens by itself whenever a message brings side elements, and then shows
// every side element of the chat stacked. Here the panel shows only the passage whose link was clicked last:
// opened or changed by anything else, it is closed again, or, when the person was reading a passage, that passage
// is shown again. Served inline with the page (assistant/chat/page.py); nothing here talks to the server.
(function () {
  "use strict";
  var wanted = null; // the citation link the person clicked last, while the panel is open: {link, name}
  var reopened = 0; // when it was last clicked from here (a link that no longer opens its passage: close)

  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest ? event.target.closest("a.element-link") : null;
    if (link) { // (capture: before Chainlit's own handler opens the panel with this passage)
      wanted = {link: link, name: link.textContent.trim()};
    }
  }, true);

  function linkNamed(clicked) {
    // The clicked link itself, or, when React has drawn the message again since, a link of the same citation.
    if (document.body.contains(clicked.link)) {
      return clicked.link;
    }
    var links = document.querySelectorAll("a.element-link");
    for (var i = 0; i < links.length; i++) {
      if (links[i].textContent.trim() === clicked.name) {
        return links[i];
      }
    }
    return null;
  }

  function closePanel() {
    var button = document.querySelector("#side-view-title button");
    if (button) {
      button.click();
    } else { // the narrow-screen panel is a dialog: Escape closes it
      document.dispatchEvent(new KeyboardEvent("keydown", {key: "Escape", bubbles: true}));
    }
  }

  function check() {
    var title = document.getElementById("side-view-title");
    if (!title) { // closed, by its button or from here
      wanted = null;
      return;
    }
    var content = document.getElementById("side-view-content");
    var passages = content ? content.children.length : 0;
    if (wanted && title.textContent.trim() === wanted.name && passages === 1) {
      return; // the passage the person clicked, alone
    }
    // Opened or changed by a message, not by a click: show again what was being read, or close.
    var link = wanted && linkNamed(wanted);
    if (link && Date.now() - reopened > 500) {
      reopened = Date.now();
      link.click();
    } else {
      closePanel();
    }
  }

  new MutationObserver(check).observe(document.documentElement, {childList: true, subtree: true, characterData: true});
})();
