// Chrome-side helpers for drive.py, run in Thunderbird's main window through
// Marionette. Everything goes through Thunderbird's own code: the login
// manager, the account manager, the 3-pane's folder pane, thread pane,
// command controller and drop handler, nsIMsgFolder and the copy service.
// drive.py evaluates this file once; it leaves `window.ITM`.

window.ITM = {
  sleep(ms) {
    return new Promise(r => setTimeout(r, ms));
  },

  async waitFor(fn, ms = 30000, what = "condition") {
    const t0 = Date.now();
    for (;;) {
      let v;
      try {
        v = await fn();
      } catch (e) {
        v = false;
      }
      if (v) {
        return v;
      }
      if (Date.now() - t0 > ms) {
        throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      }
      await this.sleep(100);
    }
  },

  about3() {
    return document.getElementById("tabmail").currentAbout3Pane;
  },

  folder(uri) {
    return MailServices.folderLookup.getFolderForURL(uri);
  },

  hdr(uri, key) {
    const f = this.folder(uri);
    return [...f.messages].find(h => h.messageKey == key) || null;
  },

  async ready() {
    await window.delayedStartupPromise;
    await this.waitFor(() => this.about3()?.folderPane?.activeModes, 30000, "the 3-pane");
    // A fixed, photogenic window: the whole Xvfb screen.
    window.moveTo(0, 0);
    window.resizeTo(screen.width, screen.height);
    await this.waitFor(() => window.outerWidth == screen.width && window.outerHeight == screen.height, 5000, "the window size").catch(() => {});
    return { width: window.outerWidth, height: window.outerHeight };
  },

  // The password first (so Thunderbird never prompts), then the account,
  // as the account wizard would create it.
  async createAccount({ host, port, user, password, name }) {
    const origin = `imap://${host}`;
    const have = await Services.logins.searchLoginsAsync({ origin });
    if (!have.some(l => l.username == user)) {
      const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
      info.init(origin, null, origin, user, password, "", "");
      await Services.logins.addLoginAsync(info);
    }
    const server = MailServices.accounts.createIncomingServer(user, host, "imap");
    server.port = port;
    server.socketType = Ci.nsMsgSocketType.SSL;
    server.authMethod = Ci.nsMsgAuthMethod.passwordCleartext;
    server.prettyName = name;
    server.loginAtStartUp = true;
    server.doBiff = true; // check_new_mail
    const identity = MailServices.accounts.createIdentity();
    identity.fullName = "Alice";
    identity.email = `${user}@localhost`;
    const account = MailServices.accounts.createAccount();
    account.addIdentity(identity);
    account.incomingServer = server;
    MailServices.accounts.defaultAccount = account;
    // What the wizard's finish does: show the new Inbox, discover folders.
    const inbox = await this.waitFor(
      () => server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox),
      10000,
      "the Inbox folder object"
    );
    this.about3().displayFolder(inbox);
    server.performExpand(top.msgWindow);
    return { key: server.key, root: server.rootFolder.URI, usingSubscription: server.QueryInterface(Ci.nsIImapIncomingServer).usingSubscription };
  },

  // Every folder Thunderbird knows for the account (from LIST/LSUB).
  folders(rootURI) {
    const root = this.folder(rootURI);
    return [...root.descendants].map(f => ({
      uri: f.URI,
      name: f.prettyName,
      canAddMessages: f.canFileMessages,
      canDeleteMessages: f.canDeleteMessages,
      noSelect: f.noSelect,
    }));
  },

  // No connection in progress (the status bar's progress meter hidden).
  async quiet(ms = 5000) {
    const panel = document.getElementById("statusbar-progresspanel");
    return this.waitFor(() => panel.collapsed, ms, "an idle status bar").then(() => true, () => false);
  },

  expand(uri) {
    const a = this.about3();
    const row = a.folderPane.getRowForFolder(uri);
    if (row && row.classList.contains("collapsed")) {
      a.folderTree.expandRow(row);
    }
    return !!row;
  },

  // The folder pane's rows as drawn: label, depth and whether the row is on
  // screen (rendered, not inside a collapsed parent).
  paneRows() {
    const a = this.about3();
    const out = [];
    for (const li of a.folderTree.querySelectorAll("li")) {
      if (!li.uri) {
        continue;
      }
      const label = li.querySelector(".name")?.textContent;
      const rect = li.querySelector(".container")?.getBoundingClientRect();
      let depth = 0;
      for (let p = li.parentElement; p && p != a.folderTree; p = p.parentElement) {
        if (p.localName == "li") {
          depth++;
        }
      }
      out.push({ uri: li.uri, label, depth, shown: !!rect && rect.height > 0 });
    }
    return out;
  },

  async showFolder(uri, count) {
    const a = this.about3();
    a.displayFolder(uri);
    await this.waitFor(
      () => a.gFolder?.URI == uri && a.gDBView && (count == null || a.gDBView.rowCount == count),
      30000,
      `${uri} shown with ${count} messages`
    );
    return a.gDBView.rowCount;
  },

  async selectMessage(uri, key) {
    const a = this.about3();
    if (a.gFolder?.URI != uri) {
      await this.showFolder(uri);
    }
    const hdr = this.hdr(uri, key);
    const idx = a.gDBView.findIndexOfMsgHdr(hdr, true);
    a.threadTree.selectedIndex = idx;
    a.threadTree.scrollToIndex(idx);
    const am = a.messageBrowser.contentWindow;
    await this.waitFor(
      () =>
        am.gMessage?.messageKey == key &&
        am.gMessage.folder?.URI == uri &&
        am.document.getElementById("messagepane")?.contentDocument?.readyState == "complete",
      20000,
      "the message in the message pane"
    );
    return { index: idx, subject: am.gMessage.mime2DecodedSubject };
  },

  // What Thunderbird shows for one message: in its database, in the view
  // (a row of the thread pane), read or not, and the row's styling.
  msgState(uri, key) {
    const a = this.about3();
    const hdr = this.hdr(uri, key);
    const st = { inDb: !!hdr, isRead: hdr ? hdr.isRead : null, viewIndex: -1, rowUnread: null };
    if (hdr && a.gFolder?.URI == uri) {
      st.viewIndex = a.gDBView.findIndexOfMsgHdr(hdr, true);
      if (st.viewIndex >= 0) {
        a.threadTree.scrollToIndex(st.viewIndex);
        const row = a.threadTree.getRowAtIndex(st.viewIndex);
        st.rowUnread = row ? row.classList.contains("unread") : null;
      }
    }
    return st;
  },

  // Get Messages for one folder (SELECT and flag sync), to completion.
  refresh(uri) {
    const f = this.folder(uri);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`refresh of ${uri} timed out`)), 30000);
      f.updateFolderWithListener(top.msgWindow, {
        QueryInterface: ChromeUtils.generateQI(["nsIUrlListener"]),
        OnStartRunningUrl() {},
        OnStopRunningUrl(url, status) {
          clearTimeout(timer);
          resolve(status);
        },
      });
    });
  },

  // The menu and keyboard commands as the 3-pane and the message pane
  // would enable them for the selected message, and the header's Delete.
  commands() {
    const a = this.about3();
    const am = a.messageBrowser.contentWindow;
    const out = {};
    for (const c of ["cmd_delete", "cmd_deleteMessage", "cmd_shiftDelete", "cmd_moveMessage", "cmd_copyMessage", "cmd_archive", "cmd_markAsRead", "cmd_markAsUnread"]) {
      out[c] = a.commandController.isCommandEnabled(c);
    }
    const trash = am.document.getElementById("hdrTrashButton");
    out.headerDeleteButtonDisabled = trash ? trash.disabled : null;
    return out;
  },

  focusThreadTree() {
    window.focus();
    const a = this.about3();
    a.threadTree.table.body.focus();
    return a.document.activeElement?.id || a.document.activeElement?.localName;
  },

  clickHeaderDelete() {
    const am = this.about3().messageBrowser.contentWindow;
    am.document.getElementById("hdrTrashButton").click();
  },

  // A client ignoring the ACL: what messages.delete() / the Delete command
  // would do if enabled, straight to nsIMsgFolder (IMAP: UID MOVE to Trash).
  forceDelete(uri, key) {
    const f = this.folder(uri);
    const hdr = this.hdr(uri, key);
    return new Promise(resolve => {
      const timer = setTimeout(() => resolve("timeout"), 30000);
      f.deleteMessages([hdr], top.msgWindow, false, false, {
        QueryInterface: ChromeUtils.generateQI(["nsIMsgCopyServiceListener"]),
        onStartCopy() {},
        onProgress() {},
        setMessageKey() {},
        getMessageId() {
          return null;
        },
        onStopCopy(status) {
          clearTimeout(timer);
          resolve(status);
        },
      }, true);
    });
  },

  // The same for a move (MailServices.copy with isMove, as an unguarded
  // extension or a drag with canDeleteMessages true would do).
  forceMove(uri, key, destURI) {
    const hdr = this.hdr(uri, key);
    return new Promise(resolve => {
      const timer = setTimeout(() => resolve("timeout"), 30000);
      MailServices.copy.copyMessages(this.folder(uri), [hdr], this.folder(destURI), true, {
        QueryInterface: ChromeUtils.generateQI(["nsIMsgCopyServiceListener"]),
        onStartCopy() {},
        onProgress() {},
        setMessageKey() {},
        getMessageId() {
          return null;
        },
        onStopCopy(status) {
          clearTimeout(timer);
          resolve(status);
        },
      }, top.msgWindow, true);
    });
  },

  // Message > Copy To > folder (the context menu's command).
  async copyTo(uri, key, destURI) {
    await this.selectMessage(uri, key);
    const a = this.about3();
    const enabled = a.commandController.isCommandEnabled("cmd_copyMessage");
    a.commandController.doCommand("cmd_copyMessage", this.folder(destURI));
    return enabled;
  },

  _dragData(uri, key, effect) {
    const a = this.about3();
    const dt = new a.DataTransfer();
    dt.mozSetDataAt("text/x-moz-message", this.folder(uri).getUriForMsg(this.hdr(uri, key)), 0);
    dt.effectAllowed = "all";
    dt.dropEffect = effect;
    return dt;
  },

  // A message dragged over a folder row: the drop effect the folder pane
  // allows ("none" = the no-drop cursor).
  dragOver(uri, key, destURI, effect = "move") {
    const a = this.about3();
    const row = a.folderPane.getRowForFolder(destURI);
    const dt = this._dragData(uri, key, effect);
    row.querySelector(".container").dispatchEvent(
      new a.DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true })
    );
    a.folderPane._clearDropTarget?.();
    return dt.dropEffect;
  },

  // A message dropped on a folder row of the folder pane (a plain drag
  // means move).
  drop(uri, key, destURI, effect = "move") {
    const a = this.about3();
    const row = a.folderPane.getRowForFolder(destURI);
    const dt = this._dragData(uri, key, effect);
    row.querySelector(".container").dispatchEvent(
      new a.DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true })
    );
    return true;
  },

  // The folders offered by the message context menu's Copy To and Move To
  // (folder-menupopup, mode "filing"), every submenu built.
  fileTargets(which = "mailContext-copyMenu") {
    const a = this.about3();
    const menu = a.document.getElementById(which);
    const out = new Set();
    const walk = popup => {
      if (!popup) {
        return;
      }
      popup._ensureInitialized?.();
      for (const el of popup.children) {
        if (el.localName == "menu") {
          walk(el.menupopup);
        } else if (el.localName == "menuitem" && el._folder && el.getAttribute("disabled") != "true") {
          out.add(el._folder.URI);
        }
      }
    };
    walk(menu.menupopup);
    return [...out];
  },

  // Text of open alert popups and prompts (then closed).
  takeAlerts() {
    const out = [];
    for (const w of Services.wm.getEnumerator(null)) {
      const type = w.document.documentElement.getAttribute("windowtype");
      if (type == "alert:alert" || type == "prompt:promptPassword" || type == "Prompt:Prompt" || w.location.href.includes("commonDialog")) {
        out.push({ type, text: (w.document.getElementById("alertTextLabel") || w.document.getElementById("infoBody") || w.document.documentElement).textContent.replace(/\s+/g, " ").trim() });
        w.close();
      }
    }
    return out;
  },
};
return true;
