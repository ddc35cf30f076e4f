/* Shop front: mounts the rasa-webchat widget with the settings the server rendered into
 * #chat-config, and lets "Ask the assistant" buttons open it. No inline scripts (CSP).
 *
 * rasa-webchat 1.0.1 keeps its launcher hidden until Rasa confirms the socket session, so the
 * page marks <html class="chat-ready"> while the socket is connected; the CSS shows the
 * "Ask the assistant" buttons only then. */
(function () {
  "use strict";

  var MOUNT_ID = "shop-chat";

  function readConfig() {
    var element = document.getElementById("chat-config");
    if (!element) {
      return null;
    }
    try {
      return JSON.parse(element.textContent);
    } catch (error) {
      console.error("shop: invalid chat configuration", error);
      return null;
    }
  }

  function setChatReady(ready) {
    document.documentElement.classList.toggle("chat-ready", ready);
  }

  function mountChat() {
    var config = readConfig();
    var mount = document.getElementById(MOUNT_ID);
    if (!config || !mount) {
      return;
    }
    if (!window.WebChat || typeof window.WebChat.default !== "function") {
      console.warn("shop: the chat widget bundle did not load; chat is unavailable");
      return;
    }
    // Not "session_confirm": the widget needs that event for itself.
    config.onSocketEvent = {
      connect: function () { setChatReady(true); },
      disconnect: function () { setChatReady(false); }
    };
    // The widget's default typing pause (up to 3 s per message) would make a live agent's reply
    // look slow; a short fixed pause still shows that a message is coming.
    config.customMessageDelay = function () { return 300; };
    window.WebChat.default(config, mount);
  }

  function openChat() {
    var mount = document.getElementById(MOUNT_ID);
    if (!mount) {
      return;
    }
    if (mount.querySelector(".rw-chat-open")) {
      var input = mount.querySelector(".rw-new-message");
      if (input) {
        input.focus();
      }
      return;
    }
    var launcher = mount.querySelector(".rw-launcher");
    if (launcher) {
      launcher.click();
    }
  }

  document.addEventListener("click", function (event) {
    var trigger = event.target.closest ? event.target.closest("[data-open-chat]") : null;
    if (trigger) {
      event.preventDefault();
      openChat();
    }
  });

  mountChat();
})();
