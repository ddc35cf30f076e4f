/* Shop front: mounts the rasa-webchat widget with the settings the server rendered into
 * #chat-config, and lets "Ask the assistant" buttons open it. No inline scripts (CSP).
 *
 * rasa-webchat 1.0.1 keeps its launcher hidden until Rasa confirms the socket session, so the
 * page marks <html class="chat-ready"> while the socket is connected; the CSS shows the
 * "Ask the assistant" buttons only then. */
(function () {
  "use strict";

  var MOUNT_ID = "shop-chat";
  // rasa-webchat sends initPayload (the page context, see web/server.py) only when a conversation
  // starts. Later, the chat open on a product, cart or checkout page (opened there, or still open from
  // the previous page) sends that page's context here, once, so the assistant offers help for the page
  // the shopper is on; other pages need no new greeting.
  var CONTEXT_PAGES = ["product", "cart", "checkout"];
  var LAST_CONTEXT_KEY = "shop-chat-last-page-context";
  var webchat = null;

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

  function tellPageContext(config) {
    var payload = config.initPayload;
    var last = window.sessionStorage.getItem(LAST_CONTEXT_KEY);
    window.sessionStorage.setItem(LAST_CONTEXT_KEY, payload);
    // No earlier context in this tab: the conversation starts now and the widget sends initPayload itself.
    if (last === null || last === payload || CONTEXT_PAGES.indexOf(config.customData.page) < 0) {
      return;
    }
    // The widget holds the message until Rasa has confirmed the session, and does not show it.
    if (webchat && typeof webchat.sendMessage === "function") {
      webchat.sendMessage(payload);
    }
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
      connect: function () {
        setChatReady(true);
        // The widget restores an open chat on the next page without an "open" event.
        if (document.querySelector("#" + MOUNT_ID + " .rw-chat-open")) {
          tellPageContext(config);
        }
      },
      disconnect: function () { setChatReady(false); }
    };
    // The widget's default typing pause (up to 3 s per message) would make a live agent's reply
    // look slow; a short fixed pause still shows that a message is coming.
    config.customMessageDelay = function () { return 300; };
    config.innerRef = function (instance) { webchat = instance; };
    config.onWidgetEvent = {
      onChatOpen: function () { tellPageContext(config); },
      // Defined because the widget calls onChatOpen on closing when onChatClose is missing.
      onChatClose: function () {}
    };
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
